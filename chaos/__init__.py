"""The chaos suite of django-container-manager: ``make chaos``.

It starts its own PostgreSQL cluster and its own Docker engine (never the
machine's shared ones), runs real ``process_container_jobs`` workers against
them, injects faults on a schedule drawn from a seed (SIGKILL and SIGTERM of
workers, a restart of PostgreSQL, a restart of the engine), and checks the
outcome against an independent witness: the engine's own events stream for
containers, the kernel (a witness file written by each command, file locks
and ``/proc``) for local processes. See docs/chaos.md.

Modules:

- ``run``: the command line and the scenario (``python -m chaos``);
- ``services``: the private PostgreSQL cluster and dockerd, the test image;
- ``workers``: the worker processes, who killed them and how they ended;
- ``schedule``: the fault schedule of a seed;
- ``witness``: the events listener and the process witness;
- ``invariants``: the rows of the report, computed from plain data;
- ``settings``: the Django settings of the driver and of its workers.
"""
