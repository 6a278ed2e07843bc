"""Healthchecks (Docker's daemon/health.go): is the container's service answering?

An image's HEALTHCHECK, or `docker run --health-cmd ...`, names a probe: a command run inside
the container every Interval, killed after Timeout. Its exit code decides:

    0                     healthy at once (the failing streak goes back to 0)
    anything else         one more failure; Retries failures in a row make it unhealthy,
                          except inside StartPeriod while it has never been healthy
    killed at Timeout     a failure with exit code -1 and "Health check exceeded timeout"

`State.Health` keeps the status (starting, healthy, unhealthy), the failing streak and the
last five results (start, end, exit code, the first 4 KiB of output); each change of status
is a `health_status: <status>` event, and `docker ps` shows it as `(healthy)`. A container's
health starts over, as "starting", at each start of it, and its probing ends with that run.

The daemon runs each probe as an exec of the container (pydockerd.run_health_probe): this
module holds the rules and the loop, and gets the probe runner and the event log as
arguments, so it never needs the daemon itself.
"""
import threading

from drivers import dockerfile, errdefs, logger

DEFAULTS = {"Interval": 30 * 10 ** 9, "Timeout": 30 * 10 ** 9, "StartPeriod": 0, "Retries": 3}
MIN_DURATION = 10 ** 6     # container.MinimumDuration, 1 ms
MAX_LOG = 5                # maxLogEntries: the probes inspect shows
MAX_OUTPUT = 4096          # maxOutputLen: what a probe's output keeps


def validate(config):
    """verifyContainerSettings for Config.Healthcheck: durations of 1 ms at least (0: the
    image's or the default), retries not negative."""
    healthcheck = config.get("Healthcheck") or {}
    for key in ("Interval", "Timeout", "StartPeriod"):
        value = healthcheck.get(key) or 0
        if not isinstance(value, int) or (value and value < MIN_DURATION):
            raise errdefs.InvalidParameter("%s in Healthcheck cannot be less than 1ms" % key)
    retries = healthcheck.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise errdefs.InvalidParameter("Retries in Healthcheck cannot be negative")


def merge(healthcheck, image_healthcheck):
    """runconfig.Merge for the healthcheck: the image's fills in what the request leaves
    zero (`--health-interval` alone keeps the image's test)."""
    if not image_healthcheck:
        return healthcheck
    if healthcheck is None:
        return dict(image_healthcheck)
    merged = dict(healthcheck)
    for key in ("Test", "Interval", "Timeout", "StartPeriod", "Retries"):
        if not merged.get(key) and image_healthcheck.get(key):
            merged[key] = image_healthcheck[key]
    return merged


def probe_command(config):
    """getProbe: the command a probe runs, or None without a healthcheck (`NONE`, which
    `--no-healthcheck` sends, turns the image's off)."""
    test = (config.get("Healthcheck") or {}).get("Test") or []
    if test[:1] == ["CMD"] and len(test) > 1:
        return test[1:]
    if test[:1] == ["CMD-SHELL"] and len(test) > 1:
        return (config.get("Shell") or ["/bin/sh", "-c"]) + test[1:]
    return None


def setting(config, key):
    return (config.get("Healthcheck") or {}).get(key) or DEFAULTS[key]


def timeout_message(timeout):
    return "Health check exceeded timeout (%s)" % dockerfile.format_duration(timeout)


def result(started, ended, exit_code, output):
    """One entry of State.Health.Log; the output cut to its first 4 KiB."""
    if len(output) > MAX_OUTPUT:
        output = output[:MAX_OUTPUT] + b"..."
    return {"Start": started, "End": ended, "ExitCode": exit_code,
            "Output": output.decode("utf-8", "replace")}


def stdcopy_payloads(data):
    """The payloads of stdcopy frames, joined (an incomplete last frame is dropped)."""
    payloads = []
    while len(data) >= 8:
        size = int.from_bytes(data[4:8], "big")
        payloads.append(data[8:8 + size])
        data = data[8 + size:]
    return b"".join(payloads)


def start_monitor(container, monitor, run_probe, log_event):
    """initHealthMonitor: at each start a container with a healthcheck is "starting" again
    (its failing streak reset, its log kept), and a thread probes it every Interval for as
    long as this run of the container (this monitor) lasts. run_probe(command) -> a result;
    log_event(type, action, id, attributes) is the daemon's events service."""
    probe = probe_command(container.config)
    if probe is None:
        return
    with container.cond:
        container.health = dict(container.health or {"Log": []}, Status="starting",
                                FailingStreak=0)
    threading.Thread(target=_probe_loop, args=(container, monitor, probe, run_probe, log_event),
                     name="health " + container.id[:12], daemon=True).start()


def _probe_loop(container, monitor, probe, run_probe, log_event):
    interval = setting(container.config, "Interval") / 1e9
    while True:
        with container.cond:   # the exit of this run wakes it: it ends with the run
            if container.cond.wait_for(lambda: container.monitor is not monitor, interval):
                return
        outcome = run_probe(probe)
        with container.cond:
            if container.monitor is not monitor:   # stopped while probing: not a verdict
                return
            changed = record(container, outcome)
        if changed:
            log_event("container", "health_status: " + changed, container.id,
                      container.event_attributes())


def record(container, outcome):
    """handleProbeResult, under the container's lock: keep the last 5 results; a success
    makes it healthy, `Retries` failures in a row unhealthy, except that failures inside
    the start period of a container not yet healthy do not count. The new status if it
    changed (for the health_status event), else None."""
    health = container.health
    before = health["Status"]
    health["Log"] = (health["Log"] + [outcome])[-MAX_LOG:]
    if outcome["ExitCode"] == 0:
        health["FailingStreak"], health["Status"] = 0, "healthy"
    elif not (before == "starting" and logger.parse_time(outcome["Start"]) -
              logger.parse_time(container.started_at) < setting(container.config, "StartPeriod")):
        health["FailingStreak"] += 1
        if health["FailingStreak"] >= setting(container.config, "Retries"):
            health["Status"] = "unhealthy"
    return health["Status"] if health["Status"] != before else None


def status(container):
    """What the `health` filter of `docker ps` compares: starting, healthy, unhealthy or none."""
    return container.health["Status"] if container.health else "none"

