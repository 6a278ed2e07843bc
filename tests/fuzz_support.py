"""Fuzzing pydockerd from the Engine API spec: schemathesis generates, this module sends and judges.

The spec (tests/fixtures/engine-api-v1.41.yaml, Swagger 2.0, basePath /v1.41) is loaded with
schemathesis; every operation's strategy draws requests -- valid ones (POSITIVE) and ones that
break the schema on purpose (NEGATIVE: wrong types, missing fields, out-of-range numbers) --
which hypothesis feeds, operation by operation, to a daemon on a temporary root.

Transport: schemathesis speaks `requests`; `UnixSocketAdapter` carries a prepared request over
the daemon's unix socket with the stdlib's http.client. Streams that never end by themselves
(`events` without `until`, `logs`/`stats` that follow, `attach`, `wait`) are read for at most
STREAM_SECONDS and then the connection is closed, so every operation of the spec can be
fuzzed in bounded time.

Targets: a path parameter drawn from the spec names nothing (a 404 path), so two thirds of
the cases name a real object instead -- the running container `fuzzbox` or the stopped
`fuzzstopped`, an exec, the image tag `fuzzimg:latest`, the volume `fuzzvol`, the network
`fuzznet` -- and their container creates use the image busybox; `FuzzTargets.ensure` puts
back whatever a case removed, stopped or paused.

Verdict, per answer (`problems`): no 5xx except the allow-list (`ALLOWED_5XX`: where dockerd
answers 5xx too, with the same message, and the spec documents it); every error body is JSON
{"message": str} with no Python exception text in it. Per operation (`FuzzRun.fuzz`,
`after_batch`): the daemon log grew no traceback that is not logged as such (socketserver's or
threading's raw printouts), no answer broke off after it had started, no 500 outside the
allow-list went out without a logged traceback; /_ping answers afterwards, and the listings
(`ps -a`, images, volumes, networks) still answer 200.
"""
import collections
import contextlib
import http.client
import io
import json
import re
import socket
import time

import hypothesis
import hypothesis.strategies as st
import requests
import requests.adapters
import requests.structures
import schemathesis
from schemathesis.transport.serialization import serialize_binary

from conftest import REPO, UnixHTTPConnection

SPEC = REPO + "/tests/fixtures/engine-api-v1.41.yaml"
BASE_URL = "http://pydockerd/v1.41"

STREAM_SECONDS = 1.0  # how long an endless stream is read before the client hangs up
ANSWER_SECONDS = 8.0  # how long a request may wait for its status line
MAX_BODY = 4 << 20  # bytes of an answer kept (an export or a save can be large)

# Where an answer >= 500 is right: dockerd answers the same for the same input, and the spec
# documents that status for the operation. (method, path, status) -> (what the message must
# match, why); any other message with that status is still a failure.
UNREACHABLE = r"dial tcp|no such host|connection refused|network is unreachable|i/o timeout"
ALLOWED_5XX = {
    ("POST", "/images/create", 500): (
        UNREACHABLE, "a pull dials the registry, which the daemon's empty network namespace "
        "cannot reach: dockerd answers 500 with the dial error (spec: 500 server error)"),
    ("GET", "/images/search", 500): (UNREACHABLE, "a search dials the registry: as a pull"),
    ("POST", "/auth", 500): (UNREACHABLE, "a login dials the registry: as a pull"),
    ("GET", "/distribution/{name}/json", 500): (UNREACHABLE, "asks the registry: as a pull"),
    ("POST", "/images/{name}/push", 500): (UNREACHABLE, "a push dials the registry: as a pull"),
    ("GET", "/containers/{id}/top", 500): (
        r"^ps: ", "ps_args go to ps; when ps refuses them dockerd answers 500 \"Error running "
        "ps: exit status 1\" (an untyped error; spec: 500 server error)"),
    ("POST", "/build", 500): (
        r"^Cannot locate specified Dockerfile", "a context without its Dockerfile: dockerd's "
        "error is untyped, so 500 (spec: 500 server error)"),
}


def allowed_5xx(operation, status, message):
    """Whether a 5xx answer is one dockerd gives too (ALLOWED_5XX)."""
    allowed = ALLOWED_5XX.get((operation.method.upper(), operation.path, status))
    return allowed is not None and re.search(allowed[0], message or "") is not None


# Python's words in an answer mean an exception escaped into a message.
PYTHON_ERROR_TEXT = re.compile(
    r"Traceback|object has no attribute|embedded null byte|'(int|str|NoneType|list|dict|float|bool)'"
    r" object|unhashable type|not subscriptable|codec can't|invalid literal for|"
    r"list index out of range|unexpected keyword argument|positional argument|"
    r"(Key|Type|Value|Attribute|Index|Unicode\w*|Overflow|Recursion|ZeroDivision)Error\b")

# Asked after every batch: what every client lists must survive whatever was stored.
LISTINGS = ("/containers/json?all=1", "/images/json", "/volumes", "/networks")

LOG_RECORD = re.compile(r"^(ERRO|WARN|INFO|DEBU|FATA)\[")
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
BROKEN_OFF = "error after the response started"
RAW_PRINTOUTS = ("Exception in thread", "Exception occurred during processing of request")


class UnixSocketAdapter(requests.adapters.BaseAdapter):
    """A requests transport over a unix socket (http.client underneath, one connection per
    request). `last` keeps the request as sent, to report the exact input of a failure."""

    def __init__(self, socket_path):
        super().__init__()
        self.socket_path = socket_path
        self.last = None

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        body = request.body.encode("utf-8", "surrogatepass") if isinstance(request.body, str) \
            else request.body
        self.last = SentRequest(request.method, request.path_url, dict(request.headers), body)
        connection = UnixHTTPConnection(self.socket_path, timeout=ANSWER_SECONDS)
        try:
            connection.putrequest(request.method, request.path_url, skip_host=True,
                                  skip_accept_encoding=True)
            headers = dict(request.headers, Host="pydockerd")
            if body is not None and "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            answer = connection.getresponse()
            content = read_bounded(connection, answer)
        except (socket.timeout, OSError, http.client.HTTPException) as err:
            raise requests.exceptions.ConnectionError(err, request=request)
        finally:
            connection.close()
        return make_response(request, answer, content)

    def close(self):
        pass


class SentRequest(collections.namedtuple("SentRequest", "method path headers body")):
    def describe(self):
        content_type = self.headers.get("Content-Type", "")
        body = self.body[:600] if self.body else b""
        return "%s %s %s%r" % (self.method, self.path, content_type + " " if content_type else "",
                               body)


def read_bounded(connection, answer):
    """The answer's body: all of it, or what came within STREAM_SECONDS (and MAX_BODY)."""
    if answer.getheader("Content-Length") is not None or answer.status in (204, 304):
        connection.sock.settimeout(ANSWER_SECONDS)
        return answer.read(MAX_BODY)
    deadline = time.monotonic() + STREAM_SECONDS
    parts, size = [], 0
    while size < MAX_BODY:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        connection.sock.settimeout(left)
        try:
            part = answer.read1(65536)
        except (socket.timeout, http.client.IncompleteRead):
            break
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


class RawHeaders(dict):
    """Header name -> [values], with the getlist() schemathesis reads them by."""

    def getlist(self, name):
        return self[name]


class RawAnswer(io.BytesIO):
    """What schemathesis reads off `response.raw`: the headers and the HTTP version."""

    def __init__(self, content, headers, version):
        super().__init__(content)
        self.headers = headers
        self.version = version


def make_response(request, answer, content):
    headers = RawHeaders()
    for name, value in answer.getheaders():
        headers.setdefault(name, []).append(value)
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = requests.structures.CaseInsensitiveDict(
        {name: ", ".join(values) for name, values in headers.items()})
    response.raw = RawAnswer(content, headers, answer.version)
    response._content = content
    response.url = request.url
    response.request = request
    return response


@schemathesis.serializer("application/x-tar")
def tar_body(_context, value):
    """A tar body (load, build context, archive upload) goes as the bytes generated."""
    return {"data": serialize_binary(value)}


# -- the objects real path parameters name ---------------------------------------------------

# What a case's path parameters name: what the spec generated (mostly nothing there), or the
# running or the stopped target container (and the other targets of its kind).
TARGETS = ("generated", "running", "stopped")


class FuzzTargets(object):
    """The objects two thirds of the cases name, put back when a case removed or changed them:
    a running container with a tty (so that a resize reaches its monitor) and a stopped one
    (whose files are reached through its mounted layer), an image tag, a volume, a network,
    and an exec of the running container."""

    RUNNING = "fuzzbox"
    STOPPED = "fuzzstopped"
    IMAGE = "fuzzimg:latest"
    VOLUME = "fuzzvol"
    NETWORK = "fuzznet"
    # A shell that ends on SIGTERM (pid 1 ignores signals it has no handler for), so a
    # fuzzed `stop` or `restart` costs a second, not its `t`.
    COMMAND = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]

    def __init__(self, daemon):
        self.daemon = daemon
        self.exec_id = None

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self.daemon.request(method, "/v1.41" + path, body=data, headers=headers, timeout=30)

    def ensure(self):
        self.ensure_container(self.RUNNING, running=True)
        self.ensure_container(self.STOPPED, running=False)
        if self.request("GET", "/images/%s/json" % self.IMAGE).status == 404:
            self.request("POST", "/images/busybox/tag?repo=fuzzimg&tag=latest")
        if self.request("GET", "/volumes/" + self.VOLUME).status == 404:
            self.request("POST", "/volumes/create", {"Name": self.VOLUME})
        if self.request("GET", "/networks/" + self.NETWORK).status == 404:
            self.request("POST", "/networks/create", {"Name": self.NETWORK, "Driver": "bridge"})
        if self.exec_id is None or self.request("GET", "/exec/%s/json" % self.exec_id).status == 404:
            made = self.request("POST", "/containers/%s/exec" % self.RUNNING, {"Cmd": ["true"]})
            self.exec_id = made.json().get("Id") if made.status == 201 else None

    def ensure_container(self, name, running):
        """The container exists (under its name), unpaused, running or not as asked."""
        container = self.request("GET", "/containers/%s/json" % name)
        if container.status == 404:
            self.request("POST", "/containers/create?name=" + name, {
                "Image": "busybox", "Cmd": self.COMMAND, "Tty": True, "OpenStdin": True,
                "HostConfig": {"NetworkMode": "none"}})
            state = {}
        else:
            state = container.json()["State"]
        if state.get("Paused"):
            self.request("POST", "/containers/%s/unpause" % name)
        if running and not state.get("Running"):
            self.request("POST", "/containers/%s/start" % name)
        elif state.get("Running") and not running:
            self.request("POST", "/containers/%s/kill" % name)

    def aim(self, case, target):
        """Point the case at real objects (`target`: "running" or "stopped", the container
        it names): path parameters, busybox for a container create, commit's container."""
        operation = case.operation
        container = self.RUNNING if target == "running" else self.STOPPED
        value = self.exec_id if operation.path.startswith("/exec/") else {
            "containers": container, "images": self.IMAGE, "volumes": self.VOLUME,
            "networks": self.NETWORK, "distribution": self.IMAGE}.get(operation.path.split("/")[1])
        for parameter in operation.path_parameters:
            if value and isinstance(case.path_parameters, dict):
                case.path_parameters[parameter.name] = value
        if operation.path == "/containers/create" and isinstance(case.body, dict):
            case.body["Image"] = "busybox"
        if operation.path == "/commit" and isinstance(case.query, dict):
            case.query["container"] = container


# -- the verdicts ----------------------------------------------------------------------------

def problems(operation, response):
    """What is wrong with one answer (empty when nothing is)."""
    found = []
    status = response.status_code
    if status >= 500 and not allowed_5xx(operation, status, error_message(response)):
        found.append("answered %d %r" % (status, response.content[:200]))
    if status >= 400 and operation.method.upper() != "HEAD":
        message = error_message(response)
        if message is None:
            found.append("error body is not {\"message\": str}: %r" % response.content[:300])
        elif PYTHON_ERROR_TEXT.search(message):
            found.append("Python error text in the message: %r" % message[:300])
    return found


def error_message(response):
    """The message of an error answer, None when its body is not {"message": str}."""
    with contextlib.suppress(ValueError, TypeError, KeyError):
        message = json.loads(response.content)["message"]
        return message if isinstance(message, str) else None
    return None


def unlogged_tracebacks(log_text):
    """Tracebacks in the daemon log that no log record introduces (raw printouts), and
    answers that broke off after they had started (their client got a truncated stream)."""
    lines = log_text.splitlines()
    found = [line[:300] for line in lines
             if line.startswith(RAW_PRINTOUTS) or BROKEN_OFF in line]
    for index, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        previous = lines[index - 1] if index else ""
        before = lines[index - 2] if index > 1 else ""
        if not (LOG_RECORD.match(previous) or (previous == "" and before.startswith(CHAINED))):
            found.append("unlogged traceback after %r" % previous[:200])
    return found


def logged_tracebacks(log_text):
    return sum(1 for line in log_text.splitlines()
               if line.startswith("Traceback (most recent call last)"))


# -- the run ---------------------------------------------------------------------------------

class Failure(collections.namedtuple("Failure", "operation status problems request")):
    def kind(self):
        """What failures of the same cause share: the operation, the status, the problems'
        words before any quoted detail."""
        return self.operation, self.status, tuple(re.split(r"[:\d'\"]", problem)[0]
                                                  for problem in self.problems)

    def __str__(self):
        return "%s %s -> %s: %s\n    input: %s" % (
            self.operation[0], self.operation[1], self.status, "; ".join(self.problems),
            self.request.describe() if self.request else "?")


class FuzzRun(object):
    """One fuzz run over every operation of the spec against `daemon` (a DaemonProcess)."""

    def __init__(self, daemon, examples, budget, derandomize=True):
        self.daemon = daemon
        self.examples = examples
        self.budget = budget
        self.derandomize = derandomize
        self.adapter = UnixSocketAdapter(daemon.socket)
        self.session = requests.Session()
        self.session.mount("http://", self.adapter)
        self.targets = FuzzTargets(daemon)
        self.failures = []
        self.tried = collections.Counter()  # operation -> requests answered
        self.statuses = collections.Counter()
        self.allowed = collections.Counter()  # (method, path, status) -> allowed 5xx answers
        self.covered = []
        self.unsendable = 0  # cases requests could not put on the wire (said in the summary)

    def run(self):
        """Every operation of the spec, none left out: endless streams are cut short by the
        transport; swarm, plugins, secrets, configs, services, nodes, tasks and /session are
        not served by pydockerd and answer 404 "page not found" (no 5xx, as checked)."""
        schema = schemathesis.openapi.from_path(SPEC)
        operations = [result.ok() for result in schema.get_all_operations()]
        self.targets.ensure()
        end = time.monotonic() + self.budget
        for done, operation in enumerate(operations):
            share = (end - time.monotonic()) / (len(operations) - done)
            self.fuzz(operation, time.monotonic() + max(share, 0.2))
            self.after_batch(operation)
        return self

    def fuzz(self, operation, deadline):
        """Up to `examples` cases of one operation, until its share of the budget is spent."""
        key = (operation.method.upper(), operation.path)
        strategy = st.tuples(st.one_of(operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
                                       operation.as_strategy(schemathesis.GenerationMode.NEGATIVE)),
                             st.sampled_from(TARGETS))
        log_before = len(self.daemon.log())
        unexpected_500s = []  # answers that need a traceback in the log

        @hypothesis.settings(max_examples=self.examples, deadline=None, database=None,
                             derandomize=self.derandomize, phases=[hypothesis.Phase.generate],
                             suppress_health_check=list(hypothesis.HealthCheck),
                             verbosity=hypothesis.Verbosity.quiet, print_blob=False)
        @hypothesis.given(drawn=strategy)
        def one(drawn):
            case, target = drawn
            if time.monotonic() > deadline:
                return
            if target != "generated":
                self.targets.ensure()
                self.targets.aim(case, target)
            try:
                response = case.call(base_url=BASE_URL, session=self.session)
            except requests.exceptions.ConnectionError as err:
                self.failures.append(Failure(key, None, ["no answer: %s" % err], self.adapter.last))
                return
            except Exception:  # a case requests cannot send (e.g. a header value outside latin-1)
                self.unsendable += 1
                return
            self.tried[key] += 1
            self.statuses[response.status_code // 100] += 1
            if response.status_code >= 500:
                if allowed_5xx(operation, response.status_code, error_message(response)):
                    self.allowed[key + (response.status_code,)] += 1
                elif response.status_code == 500:
                    unexpected_500s.append(self.adapter.last)
            found = problems(operation, response)
            if found:
                self.failures.append(Failure(key, response.status_code, found, self.adapter.last))

        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            one()
        self.covered.append(key)
        grown = self.daemon.log()[log_before:]
        for found in unlogged_tracebacks(grown):
            self.failures.append(Failure(key, None, ["daemon log: " + found], None))
        if logged_tracebacks(grown) < len(unexpected_500s):
            self.failures.append(Failure(key, 500, ["a 500 without a logged traceback"], None))

    def after_batch(self, operation):
        """/_ping answers after every operation's batch, and the daemon still runs; what the
        batch stored does not break the listings (one bad container must not fail `ps`)."""
        key = (operation.method.upper(), operation.path)
        try:
            alive = self.daemon.proc.poll() is None and \
                self.daemon.request("GET", "/_ping", timeout=10).status == 200
        except OSError:
            alive = False
        if not alive:
            self.failures.append(Failure(key, None, ["/_ping did not answer after the batch"],
                                         self.adapter.last))
            raise AssertionError("the daemon stopped answering after %s %s:\n%s" % (
                key + (self.daemon.log()[-3000:],)))
        for listing in LISTINGS:
            answer = self.daemon.request("GET", "/v1.41" + listing, timeout=30)
            if answer.status != 200:
                self.failures.append(Failure(key, answer.status, [
                    "after the batch GET %s answered %d %r" % (listing, answer.status,
                                                                answer.body[:200])], None))

    def report(self):
        """The failures, one example of each kind (with how many there were)."""
        kinds = collections.OrderedDict()
        for failure in self.failures:
            kinds.setdefault(failure.kind(), []).append(failure)
        return "\n".join("%dx %s" % (len(same), same[0]) for same in kinds.values())

    def summary(self):
        return "%d requests over %d operations (%s; allowed 5xx: %s; unsendable: %d)" % (
            sum(self.tried.values()), len(self.covered),
            ", ".join("%dxx: %d" % item for item in sorted(self.statuses.items())),
            ", ".join("%s %s %d x%d" % (key + (count,)) for key, count in sorted(self.allowed.items()))
            or "none", self.unsendable)
