"""The admin's pages as a new user meets them: widths, the sidebar open, light and dark.

At 1280, 1440 and 1920 px, with the navigation sidebar open (its default),
in the light theme and in the dark theme of the admin's toggle, every page
of container_manager fits its window; the job list fits its box with one
line a row; a failed job's page shows the whole error; and every text our
CSS or templates colour keeps a 4.5:1 contrast with what is behind it
(3:1 for bars). The system's dark preference, and the toggle's light theme
on a dark system, are checked at 1440 px.

Screenshots go to tests/artifacts/layout/admin-<theme>-<width>-<page>.png.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from container_manager.models import ContainerJob, ExecutorHost, JobQueue, Worker
from container_manager.states import JobStatus
from tests.acceptance.browser import ARTIFACTS, chromium, create_staff_user, shot, staff_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 1440, 1920)
#: The job list's columns (the action checkbox aside): all of them at 1920 px,
#: the essential ones at every width.
ALL_COLUMNS = (
    "id",
    "name_display",
    "kind_display",
    "status_display",
    "priority_display",
    "queue_display",
    "host_display",
    "when_display",
    "duration_display",
    "retries_display",
    "last_error_preview",
    "progress_bar",
)
ESSENTIAL_COLUMNS = (
    "id",
    "name_display",
    "status_display",
    "when_display",
    "last_error_preview",
    "progress_bar",
)
HEIGHT = 900
SHOTS = ARTIFACTS / "layout"
#: WCAG 2 AA: text, and the parts of a bar that carry its value.
TEXT_CONTRAST = 4.5
BAR_CONTRAST = 3.0
#: A failed job's error as a container leaves it: a chained traceback of some
#: 40 lines, taller than an output block is before it scrolls.
_DJANGO = "/usr/lib/python3/site-packages/django/core/management"
_FRAMES = [
    ("/app/manage.py", 22, "<module>", "main()"),
    ("/app/manage.py", 18, "main", "execute_from_command_line(sys.argv)"),
    (f"{_DJANGO}/__init__.py", 442, "execute_from_command_line", "utility.execute()"),
    (f"{_DJANGO}/__init__.py", 436, "execute", "self.fetch_command(subcommand).run_from_argv("),
    (f"{_DJANGO}/base.py", 416, "run_from_argv", "self.execute(*args, **cmd_options)"),
    (f"{_DJANGO}/base.py", 460, "execute", "output = self.handle(*args, **options)"),
    ("/app/prices/management/commands/fetch_prices.py", 31, "handle", "fetch.main(feed)"),
    ("/app/prices/fetch.py", 88, "main", "rows = client.download(feed, since=last_run)"),
    ("/app/prices/client.py", 41, "download", "response = self.session.get(url, timeout=30)"),
    ("/usr/lib/python3/site-packages/requests/sessions.py", 602, "get", "return self.request("),
    ("/usr/lib/python3/site-packages/requests/sessions.py", 589, "request", "resp = self.send("),
    ("/usr/lib/python3/site-packages/requests/sessions.py", 703, "send", "r = adapter.send("),
    ("/usr/lib/python3/site-packages/requests/adapters.py", 667, "send", "resp = conn.urlopen("),
    (
        "/usr/lib/python3/site-packages/urllib3/connectionpool.py",
        843,
        "urlopen",
        "retries = retries.increment(",
    ),
    (
        "/usr/lib/python3/site-packages/urllib3/util/retry.py",
        519,
        "increment",
        "raise MaxRetryError(_pool, url, reason) from reason",
    ),
]


def _traceback(frames: list[tuple[str, int, str, str]]) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for path, number, function, code in frames:
        lines += [f'  File "{path}", line {number}, in {function}', f"    {code}"]
    return lines


LONG_ERROR = "\n".join(
    [
        *_traceback(_FRAMES[-3:]),
        "urllib3.exceptions.MaxRetryError: HTTPSConnectionPool(host='feeds.example.com', "
        "port=443): Max retries exceeded with url: /v2/prices/eu-west-1/daily?since="
        "2026-11-20T00:00:00Z&format=csv&compression=gzip (Caused by ResponseError("
        "'too many 503 error responses'))",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        *_traceback(_FRAMES[:-2]),
        "requests.exceptions.RetryError: the price feed answered 503 three times in a row; "
        "giving up until the next run.",
    ]
)


@dataclass(frozen=True)
class Theme:
    """How the browser is set: the system's preference and what the toggle stored."""

    name: str
    color_scheme: str
    stored: str | None
    dark: bool
    widths: tuple[int, ...]


THEMES = {
    theme.name: theme
    for theme in (
        Theme("light", "light", None, dark=False, widths=WIDTHS),
        # The toggle at the top right, on a system that prefers light.
        Theme("dark", "light", "dark", dark=True, widths=WIDTHS),
        Theme("dark-system", "dark", None, dark=True, widths=(1440,)),
        Theme("light-toggled-on-dark-system", "dark", "light", dark=False, widths=(1440,)),
    )
}


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def job_mix() -> dict[str, ContainerJob]:
    """A page of jobs as a busy installation has them: every state, long names and errors."""
    now = timezone.now()
    yesterday = now - timedelta(days=1, hours=3)
    gpu = ExecutorHost.objects.create(
        name="gpu-worker-eu-1",
        executor_type="docker",
        connection_string="tcp://10.0.4.12:2376",
        max_concurrent_jobs=4,
    )
    local = ExecutorHost.objects.create(
        name="local", executor_type="process", max_concurrent_jobs=8
    )
    ExecutorHost.objects.create(
        name="build-2",
        executor_type="docker",
        connection_string="tcp://10.0.4.13:2376",
        health_status="unhealthy",
        health_error="Error while fetching server API version: ('Connection aborted.', "
        "ConnectionRefusedError(111, 'Connection refused'))",
        last_health_check_at=now,
    )
    JobQueue.objects.create(name="reports", max_concurrent=2)
    JobQueue.objects.create(name="imports", is_paused=True)
    Worker.objects.create(
        worker_id="web-1.eu-west-1.internal:4242",
        hostname="web-1.eu-west-1.internal",
        pid=4242,
        queues=["default", "reports", "imports"],
        last_heartbeat_at=now,
        jobs_launched=1234,
        jobs_finished=1229,
    )
    Worker.objects.create(
        worker_id="web-2.eu-west-1.internal:977",
        hostname="web-2.eu-west-1.internal",
        pid=977,
        status="stopped",
        last_heartbeat_at=yesterday,
        stopped_at=yesterday,
    )
    Worker.objects.create(
        worker_id="batch-3:31337",
        hostname="batch-3",
        pid=31337,
        last_heartbeat_at=now - timedelta(hours=2),
    )

    def job(key: str, **fields: Any) -> tuple[str, ContainerJob]:
        fields.setdefault("command", "python -m app.jobs run")
        return key, ContainerJob.objects.create(**fields)

    return dict(
        [
            job("pending", name="weekly export of every customer's invoices", queue="reports"),
            job(
                "queued",
                name="resize images",
                status=JobStatus.QUEUED,
                queue="imports",
                priority=15,
                queued_at=now,
            ),
            job(
                "scheduled",
                name="monthly invoices",
                status=JobStatus.QUEUED,
                queued_at=now,
                scheduled_for=now + timedelta(hours=6),
                priority=85,
            ),
            job(
                "launching",
                name="transcode video 8812",
                image="registry.example.com/media/transcoder:4.1",
                status=JobStatus.PULLING,
                host=gpu,
                queued_at=now,
                current_step="Pulling image",
            ),
            job(
                "building",
                name="build registry.example.com/media/transcoder:4.2",
                kind="image_build",
                image="registry.example.com/media/transcoder:4.2",
                image_options={"dockerfile": "FROM base\nRUN make\n", "push": True},
                command="",
                status=JobStatus.BUILDING,
                host=gpu,
                queued_at=now,
                progress=40,
                current_step="Step 2/5 : RUN make",
            ),
            job(
                "running",
                name="train model churn-2026-11",
                image="registry.example.com/ml/trainer:2.4.1",
                status=JobStatus.RUNNING,
                host=gpu,
                priority=90,
                queued_at=now - timedelta(minutes=30),
                launched_at=now - timedelta(minutes=29),
                started_at=now - timedelta(minutes=29),
                progress=45,
                current_step="Epoch 3 of 8: evaluating on the validation set",
                worker_id="web-1.eu-west-1.internal:4242",
                attempt=1,
            ),
            job(
                "paused",
                name="reindex search",
                status=JobStatus.PAUSED,
                host=local,
                queued_at=now,
                launched_at=now,
                started_at=now,
                progress=70,
                current_step="Indexing",
            ),
            job(
                "retrying",
                name="sync CRM contacts",
                status=JobStatus.RETRYING,
                queue="imports",
                queued_at=now - timedelta(minutes=3),
                scheduled_for=now + timedelta(seconds=40),
                retry_count=2,
                error_code="DOCKER_NETWORK_ERROR",
                last_error="Error while fetching server API version: ('Connection aborted.', "
                "ConnectionRefusedError(111, 'Connection refused'))",
                last_error_at=now,
            ),
            job(
                "completed",
                name="nightly report",
                status=JobStatus.COMPLETED,
                host=local,
                queue="reports",
                queued_at=yesterday,
                launched_at=yesterday,
                started_at=yesterday,
                completed_at=yesterday + timedelta(minutes=3, seconds=5),
                exit_code=0,
                progress=100,
                # Left over by the launch: a finished job never shows it.
                current_step="Preparing",
            ),
            job(
                "completed-with-step",
                name="backup",
                status=JobStatus.COMPLETED,
                host=local,
                queued_at=now - timedelta(hours=2),
                launched_at=now - timedelta(hours=2),
                started_at=now - timedelta(hours=2),
                completed_at=now - timedelta(hours=1, minutes=2),
                exit_code=0,
                progress=100,
                current_step="Uploading archive",
            ),
            job(
                "failed",
                name="fetch prices",
                status=JobStatus.FAILED,
                host=gpu,
                queued_at=now - timedelta(minutes=12),
                launched_at=now - timedelta(minutes=11),
                started_at=now - timedelta(minutes=11),
                completed_at=now - timedelta(minutes=10),
                exit_code=1,
                retry_count=3,
                progress=20,
                current_step="Pulling image",
                error_code="CONTAINER_EXIT_NONZERO",
                last_error=LONG_ERROR,
                last_error_at=now,
                stdout="fetching prices\n",
                stderr=LONG_ERROR + "\n",
            ),
            job(
                "launch-failed",
                name="import partner catalogue",
                image="registry.example.com/partners/catalogue-importer:latest",
                status=JobStatus.FAILED,
                queued_at=now - timedelta(minutes=20),
                completed_at=now - timedelta(minutes=19),
                retry_count=1,
                error_code="DOCKER_AUTHENTICATION_FAILED",
                last_error="401 Client Error for http+docker://localhost/v1.47/images/create"
                "?tag=latest&fromImage=registry.example.com%2Fpartners%2Fcatalogue-importer: "
                'Unauthorized ("unauthorized: authentication required")',
                last_error_at=now,
            ),
            job(
                "timeout",
                name="crawl partner sites",
                status=JobStatus.TIMEOUT,
                host=local,
                queued_at=yesterday,
                launched_at=yesterday,
                started_at=yesterday,
                completed_at=yesterday + timedelta(hours=1),
                progress=62,
                current_step="Crawling 3/5",
                last_error="Timed out after 3600 s",
            ),
            job(
                "cancelled",
                name="rebuild thumbnails",
                status=JobStatus.CANCELLED,
                queued_at=now,
                current_step="Validating",
            ),
        ]
    )


# What the browser measures ----------------------------------------------------

#: Problems of the page's width: horizontal scrolling, a results table wider than its box.
FIT_JS = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    problems.push(`the page scrolls sideways: ${root.scrollWidth} px in ${root.clientWidth} px`);
  }
  const results = document.querySelector('#changelist-form .results');
  const table = document.getElementById('result_list');
  if (results && table) {
    const box = results.getBoundingClientRect();
    const wide = results.scrollWidth > results.clientWidth + 1;
    if (wide || table.getBoundingClientRect().right > box.right + 1) {
      problems.push(
        `the results table is ${results.scrollWidth} px wide in a ${results.clientWidth} px box`
      );
    }
    for (const th of table.querySelectorAll('thead th')) {
      if (!th.getClientRects().length) continue;  // a column given way on purpose
      const r = th.getBoundingClientRect();
      const text = th.querySelector('.text') || th;
      const label = th.innerText.trim() || th.className;
      if (r.width < 1 || r.right > box.right + 1 || r.left < box.left - 1) {
        problems.push(`column ${label} is outside the box`);
      } else if (text.scrollWidth > text.clientWidth + 1) {
        problems.push(`the header of column ${label} is cut`);
      }
    }
  }
  return problems;
}
"""

#: Per row of the job list: its job id, height, progress text, error preview and tooltip.
ROWS_JS = """
() => {
  const table = document.getElementById('result_list');
  const td = table.querySelector('tbody td');
  const style = getComputedStyle(td);
  const fontSize = parseFloat(style.fontSize);
  const line = style.lineHeight === 'normal' ? 1.2 * fontSize : parseFloat(style.lineHeight);
  const oneLine = line + parseFloat(style.paddingTop) + parseFloat(style.paddingBottom)
    + parseFloat(style.borderBottomWidth);
  const shown = (el) => el.getClientRects().length > 0;
  const columns = Array.from(table.querySelectorAll('thead th'))
    .filter(shown)
    .map((th) => (th.className.match(/column-(\\S+)/) || ['', th.className])[1]);
  const rows = [];
  for (const tr of table.querySelectorAll('tbody tr')) {
    const box = tr.querySelector('input[name=_selected_action]');
    const error = tr.querySelector('.field-last_error_preview [title]');
    rows.push({
      id: box ? box.value : '',
      cells: Array.from(tr.children).filter(shown).length,
      height: tr.getBoundingClientRect().height,
      progress: (tr.querySelector('.field-progress_bar') || {innerText: ''}).innerText.trim(),
      error: error ? error.innerText : '',
      errorTitle: error ? error.getAttribute('title') : '',
    });
  }
  return {line, oneLine, rows, columns};
}
"""

#: Text and bars coloured by our CSS whose contrast is below the thresholds.
CONTRAST_JS = """
([textMin, barMin]) => {
  const parse = (value) => {
    const m = value.match(/^rgba?\\(([^)]*)\\)$/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const backgroundOf = (el) => {
    const layers = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = parse(getComputedStyle(node).backgroundColor);
      if (c && c[3] > 0) {
        layers.push(c);
        if (c[3] >= 1) break;
      }
    }
    let colour = [255, 255, 255, 1];
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      const s = v / 255;
      return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const hex = (c) => '#' + c.slice(0, 3)
    .map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
  const visible = (el) => {
    if (!el.getClientRects().length) return false;
    const s = getComputedStyle(el);
    return s.visibility !== 'hidden' && parseFloat(s.opacity) > 0;
  };
  const name = (el) => {
    const classes = typeof el.className === 'string' ? el.className.trim().split(/\\s+/) : [];
    return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + classes.filter(Boolean).map((c) => '.' + c).join('');
  };

  const ours = new Set();
  const tops = document.querySelectorAll(
    'body [class*="cm-"], body [id^="cm-"]'
  );
  for (const top of tops) {
    ours.add(top);
    for (const el of top.querySelectorAll('*')) ours.add(el);
  }
  const problems = [];
  let checked = 0;
  for (const el of ours) {
    if (!visible(el) || el.closest('select, option, script, style')) continue;
    const ownText = Array.from(el.childNodes).some(
      (n) => n.nodeType === 3 && n.textContent.trim()
    );
    const isBar = /(^|\\s)(cm-progress-fill|cm-bar)(\\s|$)/.test(el.className || '');
    if (!ownText && !isBar) continue;
    checked += 1;
    if (isBar) {
      if (el.getBoundingClientRect().width < 1) continue;
      const fill = parse(getComputedStyle(el).backgroundColor);
      const behind = backgroundOf(el.parentElement);
      const r = ratio(over(fill, behind), behind);
      if (r < barMin) {
        problems.push(`bar ${name(el)}: ${hex(fill)} on ${hex(behind)} is ${r.toFixed(2)}:1`);
      }
      continue;
    }
    const colour = parse(getComputedStyle(el).color);
    if (!colour) {
      problems.push(`${name(el)}: colour ${getComputedStyle(el).color} not understood`);
      continue;
    }
    const behind = backgroundOf(el);
    const r = ratio(over(colour, behind), behind);
    if (r < textMin) {
      const text = el.textContent.trim().slice(0, 30);
      problems.push(`${name(el)} "${text}": ${hex(colour)} on ${hex(behind)} is ${r.toFixed(2)}:1`);
    }
  }
  const body = parse(getComputedStyle(document.body).backgroundColor);
  return {problems, checked, bodyLuminance: luminance(body)};
}
"""


def page_problems(page: Any, theme: Theme, label: str) -> list[str]:
    """What is wrong with the page as shown: width, theme and contrast."""
    problems = [f"{label}: {p}" for p in page.evaluate(FIT_JS)]
    colours = page.evaluate(CONTRAST_JS, [TEXT_CONTRAST, BAR_CONTRAST])
    if (colours["bodyLuminance"] < 0.1) != theme.dark:
        problems.append(f"{label}: the page is not in the {theme.name} theme")
    if colours["checked"] == 0:
        problems.append(f"{label}: no element of ours was found to check")
    problems += [f"{label}: {p}" for p in colours["problems"]]
    return problems


def job_list_problems(
    page: Any, jobs: dict[str, ContainerJob], label: str, *, widest: bool
) -> list[str]:
    """One line a row, with the columns that matter; finished jobs show no stale step.

    Narrower lists leave out the columns that matter least; the widest shows them all.
    """
    measured = page.evaluate(ROWS_JS)
    rows = {row["id"]: row for row in measured["rows"]}
    problems = []
    if set(rows) != {str(job.pk) for job in jobs.values()}:
        problems.append(f"{label}: the list shows jobs {sorted(rows)}, not every job of the mix")
        return problems
    columns = measured["columns"]
    wanted = ALL_COLUMNS if widest else ESSENTIAL_COLUMNS
    missing = [name for name in wanted if name not in columns]
    if missing:
        problems.append(f"{label}: the list does not show {missing} (it shows {columns})")
    if any(row["cells"] != len(columns) for row in rows.values()):
        problems.append(f"{label}: the rows' cells do not match the {len(columns)} headers")
    # One line: less than half a line more than a row of plain text.
    tallest = measured["oneLine"] + measured["line"] / 2
    for key, job in jobs.items():
        row = rows[str(job.pk)]
        if row["height"] > tallest:
            problems.append(
                f"{label}: the {key} job's row is {row['height']:.0f} px tall"
                f" (one line is {measured['oneLine']:.0f} px)"
            )
    for key in ("completed", "completed-with-step", "failed", "cancelled"):
        progress = rows[str(jobs[key].pk)]["progress"]
        stale = jobs[key].current_step
        if stale in progress:
            problems.append(f"{label}: the {key} job shows the stale step {stale!r}")
    running = rows[str(jobs["running"].pk)]["progress"]
    if not running.startswith("45%") or "Epoch 3 of 8" not in running:
        problems.append(f"{label}: the running job's progress reads {running!r}")
    failed = rows[str(jobs["failed"].pk)]
    if failed["errorTitle"] != LONG_ERROR or not failed["error"].startswith(
        "CONTAINER_EXIT_NONZERO requests.exceptions.RetryError: the price feed"
    ):
        problems.append(f"{label}: the failed job's error preview is {failed!r}")
    return problems


def error_page_problems(page: Any, label: str) -> list[str]:
    """The failed job's page shows its whole error, unscrolled, inside the window."""
    block = page.locator(".field-last_error_display pre")
    if block.inner_text() != LONG_ERROR:
        return [f"{label}: the error on the job's page reads {block.inner_text()!r}"]
    shown = block.evaluate(
        """(el) => {
          const r = el.getBoundingClientRect();
          return el.scrollHeight <= el.clientHeight + 1 && el.scrollWidth <= el.clientWidth + 1
            && r.left >= 0 && r.right <= document.documentElement.clientWidth;
        }"""
    )
    return [] if shown else [f"{label}: the error on the job's page is cut or scrolls"]


def pages_of(jobs: dict[str, ContainerJob]) -> list[tuple[str, str, str]]:
    """Each page: its screenshot name, URL and a selector present once it is drawn."""
    jobs_url = "/admin/container_manager/containerjob/"
    return [
        ("job-list", jobs_url, "#result_list"),
        ("job-detail", f"{jobs_url}{jobs['failed'].pk}/change/", ".field-last_error_display"),
        ("queue-stats", f"{jobs_url}queue-stats/", "#cm-error-distribution"),
        ("live-logs", f"{jobs_url}{jobs['running'].pk}/logs/", "#cm-log-stdout"),
        ("hosts", "/admin/container_manager/executorhost/", "#result_list"),
        ("workers", "/admin/container_manager/worker/", "#result_list"),
        ("queues", "/admin/container_manager/jobqueue/", "#result_list"),
    ]


@pytest.mark.parametrize("theme_name", list(THEMES))
def test_pages_fit_every_width_and_stay_readable(browser, live_server, settings, theme_name):
    theme = THEMES[theme_name]
    create_staff_user(settings)
    jobs = job_mix()
    page = staff_page(
        browser,
        live_server.url,
        width=theme.widths[0],
        height=HEIGHT,
        color_scheme=theme.color_scheme,
        theme=theme.stored,
        by_form=False,
    )
    problems: list[str] = []
    try:
        for width in theme.widths:
            page.set_viewport_size({"width": width, "height": HEIGHT})
            for name, url, ready in pages_of(jobs):
                page.goto(url)
                page.wait_for_selector(ready)
                assert page.locator("#nav-sidebar").is_visible()
                label = f"{theme.name} {width} px {name}"
                problems += page_problems(page, theme, label)
                if name == "job-list":
                    widest = width == max(WIDTHS)
                    problems += job_list_problems(page, jobs, label, widest=widest)
                elif name == "job-detail":
                    problems += error_page_problems(page, label)
                shot(page, f"{theme.name}-{width}-{name}", SHOTS)
    finally:
        page.context.close()
    assert not problems, "\n".join(problems)
