"""Real registries on loopback, and images to put in them, for the registry client's tests.

- Registry: Debian's `docker-registry` (docker/distribution 2.8) on 127.0.0.1, a free port and a
  temporary storage directory; open, with htpasswd (Basic) auth, with token (Bearer) auth, or
  with TLS. Stopped by the test that started it.
- LoopbackServer and QuietHandler: the start/close, and the silence, of the tests' own small
  HTTP servers (recorders, proxies) on 127.0.0.1.
- TokenServer: a Bearer token server in the manner of Docker Hub's auth service. Tokens are JWTs
  signed RS256 with a key and self-signed certificate made by `openssl`; the registry trusts that
  certificate (`rootcertbundle`) and finds it again in the token's x5c header.
- Images: docker-archive tars and OCI layouts (a multi-platform index) built with tarfile and
  json, pushed with `skopeo copy`; `fixture_registry()` is a registry holding the images both
  registry test modules pull.
Nothing here ever talks to anything but 127.0.0.1.
"""
import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from drivers import distribution

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO_BIN = shutil.which("skopeo") or "/usr/bin/skopeo"

# The multi-platform fixture image has one image for this machine and one for another, so a
# pull picks by platform whatever the host is.
HOST_ARCH = distribution.host_platform()[1]
OTHER_ARCH = "arm64" if HOST_ARCH != "arm64" else "amd64"


def free_port(address="127.0.0.1"):
    """A TCP port nothing listens on right now (also handy as a registry that is down)."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def run(args, **kwargs):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


# ---------------------------------------------------------------------------------------------
# docker-registry


class Registry(object):
    """A docker-registry process with its own storage under `directory` (or another registry's
    `storage`, to serve the same blobs), listening on the loopback address `listen` (127.0.0.1,
    or ::1 for a registry outside 127.0.0.0/8)."""

    def __init__(self, directory, auth=None, tls=None, listen="127.0.0.1", storage=None):
        self.directory = directory
        self.listen = listen
        self.port = free_port(listen)
        self.host = ("[%s]:%d" if ":" in listen else "%s:%d") % (listen, self.port)
        self.storage = storage or os.path.join(directory, "storage")
        self.auth = auth or {}
        self.tls = tls
        self.process = None

    def _config(self):
        lines = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            "storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}" % self.storage,
            "http:",
            '  addr: "%s"' % self.host,
            "  secret: pydockerd-tests",
        ]
        if self.tls:
            lines += ["  tls: {certificate: %s, key: %s}" % self.tls]
        if "htpasswd" in self.auth:
            lines += ["auth:", "  htpasswd: {realm: test-realm, path: %s}" % self.auth["htpasswd"]]
        if "token" in self.auth:
            token = self.auth["token"]
            lines += ["auth:", "  token:",
                      "    realm: %s" % token.realm, "    service: %s" % token.service,
                      "    issuer: %s" % token.issuer, "    rootcertbundle: %s" % token.cert]
        return "\n".join(lines) + "\n"

    def start(self):
        os.makedirs(self.directory, exist_ok=True)
        config = os.path.join(self.directory, "config.yml")
        with open(config, "w") as config_file:
            config_file.write(self._config())
        log = open(os.path.join(self.directory, "registry.log"), "wb")
        self.process = subprocess.Popen([REGISTRY_BIN, "serve", config], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("docker-registry exited: " + self.log())
            try:
                with socket.create_connection((self.listen, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("docker-registry did not listen: " + self.log())

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        with open(os.path.join(self.directory, "registry.log"), errors="replace") as log:
            return log.read()

    def blob_path(self, digest):
        """Where the registry keeps a blob's bytes (to tamper with them behind its back)."""
        hex_part = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker/registry/v2/blobs/sha256", hex_part[:2], hex_part, "data")

    def url(self, path):
        scheme = "https" if self.tls else "http"
        return "%s://%s%s" % (scheme, self.host, path)

    def manifest(self, repository, reference, credentials=None):
        """(body, digest) of a manifest, asked for as dockerd asks (every type accepted)."""
        request = urllib.request.Request(self.url("/v2/%s/manifests/%s" % (repository, reference)))
        request.add_header("Accept", ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"]))
        if credentials:
            request.add_header("Authorization", basic_auth(*credentials))
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read(), response.headers["Docker-Content-Digest"]

    def has_manifest(self, repository, reference):
        try:
            self.manifest(repository, reference)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return False
            raise
        return True


def basic_auth(username, password):
    return "Basic " + base64.b64encode(("%s:%s" % (username, password)).encode()).decode()


def skopeo_copy(source, registry, repository_tag, credentials=None, all_images=False):
    """skopeo copy SOURCE docker://<registry>/<repository:tag>, over plain HTTP."""
    args = [SKOPEO_BIN, "copy", "-q", "--dest-tls-verify=false", "--src-tls-verify=false"]
    if all_images:
        args.append("--all")
    if credentials:
        args += ["--dest-creds", "%s:%s" % credentials]
    args += [source, "docker://%s/%s" % (registry.host, repository_tag)]
    run(args, env=dict(os.environ, REGISTRY_AUTH_FILE=os.path.join(registry.directory, "auth.json")))


# ---------------------------------------------------------------------------------------------
# Small HTTP servers


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing, so a test's output shows only its own failures."""

    def log_message(self, *args):
        pass


class LoopbackServer(object):
    """A threading server on 127.0.0.1 and a free port, serving `handler` from a daemon thread
    until close(); `host` is its host:port. Test servers subclass it after defining their handler."""

    def __init__(self, handler, server_class=http.server.ThreadingHTTPServer):
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True  # so close() never waits for a connection left hanging
        self.host = "127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# Token server


def make_certificate(directory, name, subject_alt_name=None):
    """An RSA key and a self-signed certificate (openssl); returns (cert path, key path)."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    args = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", key, "-out", cert, "-subj", "/CN=" + name]
    if subject_alt_name:
        args += ["-addext", "subjectAltName=" + subject_alt_name]
    run(args)
    return cert, key


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer(object):
    """A Bearer token server: `GET /token?service=&scope=` (Basic auth for users) and the OAuth
    `POST /token` refresh grant. Users get what they ask for; anonymous callers get pull on
    repositories under `public/` only. Every request is kept in `requests` for the tests."""

    service = "pydockerd-test"
    issuer = "pydockerd-test-issuer"

    def __init__(self, directory, users):
        os.makedirs(directory, exist_ok=True)
        self.users = dict(users)
        self.cert, self.key = make_certificate(directory, "token-signer")
        der = run(["openssl", "x509", "-in", self.cert, "-outform", "DER"]).stdout
        self.x5c = base64.b64encode(der).decode("ascii")
        self.refresh_tokens = {}
        self.requests = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.realm = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def token(self, subject, scopes):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": b64url(os.urandom(12)),
                  "access": [self._grant(subject, scope) for scope in scopes]}
        signing_input = "%s.%s" % (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()))
        signature = run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode()).stdout
        return signing_input + "." + b64url(signature)

    def _grant(self, subject, scope):
        kind, name, actions = scope.split(":")
        allowed = actions.split(",") if subject else [a for a in actions.split(",") if a == "pull"]
        if not subject and not name.startswith("public/"):
            allowed = []
        return {"type": kind, "name": name, "actions": allowed}

    def _handler_class(self):
        server = self

        class Handler(QuietHandler):
            def _answer(self, status, document):
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                server.requests.append(("GET", query, self.headers.get("Authorization")))
                subject = self._basic_user()
                if subject is False:
                    return self._answer(401, {"details": "incorrect username or password"})
                self._issue(subject, query.get("scope", []), query.get("offline_token") == ["true"])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                server.requests.append(("POST", form, self.headers.get("Authorization")))
                subject = server.refresh_tokens.get((form.get("refresh_token") or [""])[0])
                if form.get("grant_type") != ["refresh_token"] or subject is None:
                    return self._answer(401, {"details": "invalid refresh token"})
                self._issue(subject, " ".join(form.get("scope", [])).split(), False)

            def _basic_user(self):
                header = self.headers.get("Authorization") or ""
                if not header.startswith("Basic "):
                    return None
                username, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return username if server.users.get(username) == password else False

            def _issue(self, subject, scopes, offline):
                token = server.token(subject or "", scopes)
                answer = {"token": token, "access_token": token, "expires_in": 300}
                if offline and subject:
                    refresh = b64url(os.urandom(16))
                    server.refresh_tokens[refresh] = subject
                    answer["refresh_token"] = refresh
                self._answer(200, answer)

        return Handler


# ---------------------------------------------------------------------------------------------
# Images


def layer_tar(files):
    """An uncompressed layer: {path: bytes} with parent directories, fixed times and owners."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = sorted({os.path.dirname(path) for path in files if os.path.dirname(path)})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_config(layers, architecture="amd64", variant=None, label="test"):
    """An image config JSON for uncompressed `layers`; its sha256 is the image ID."""
    config = {"architecture": architecture, "os": "linux", "created": "2026-01-01T00:00:00Z",
              "config": {"Cmd": ["/bin/sh"], "Labels": {"fixture": label}},
              "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
              "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "fixture"} for _ in layers]}
    if variant:
        config["variant"] = variant
    return json.dumps(config, separators=(",", ":")).encode()


def docker_archive(path, layers, label="test", architecture="amd64"):
    """A `docker save`-style tar of one image; returns its config bytes (sha256 = image ID)."""
    config = image_config(layers, architecture=architecture, label=label)
    members = {sha256(config)[7:] + ".json": config}
    layer_names = []
    for layer in layers:
        name = sha256(layer)[7:] + "/layer.tar"
        members[name] = layer
        layer_names.append(name)
    members["manifest.json"] = json.dumps([{"Config": sha256(config)[7:] + ".json", "RepoTags": None,
                                            "Layers": layer_names}]).encode()
    write_tar(path, members)
    return config


def write_tar(path, members):
    """A tar at path of {name: bytes}, regular files in that order (a docker-archive's shape)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class OCILayout(object):
    """An OCI image layout directory holding one multi-platform index under a ref name."""

    def __init__(self, directory):
        self.directory = directory
        os.makedirs(os.path.join(directory, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(directory, "oci-layout"), "w") as layout:
            layout.write('{"imageLayoutVersion":"1.0.0"}')

    def blob(self, data, media_type):
        digest = sha256(data)
        with open(os.path.join(self.directory, "blobs", "sha256", digest[7:]), "wb") as blob:
            blob.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers, architecture, variant=None):
        """A manifest descriptor (with platform) for one image; returns (descriptor, config)."""
        config = image_config(layers, architecture=architecture, variant=variant, label=architecture)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": self.blob(config, "application/vnd.oci.image.config.v1+json"),
                    "layers": [self.blob(gzip.compress(layer, mtime=0),
                                         "application/vnd.oci.image.layer.v1.tar+gzip") for layer in layers]}
        descriptor = self.blob(json.dumps(manifest).encode(), manifest["mediaType"])
        descriptor["platform"] = {"architecture": architecture, "os": "linux"}
        if variant:
            descriptor["platform"]["variant"] = variant
        return descriptor, config

    def index(self, descriptors, ref_name):
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": descriptors}
        descriptor = self.blob(json.dumps(index).encode(), index["mediaType"])
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        with open(os.path.join(self.directory, "index.json"), "w") as top:
            json.dump({"schemaVersion": 2, "manifests": [descriptor]}, top)
        return descriptor["digest"]


# ---------------------------------------------------------------------------------------------
# The registry both registry test modules pull from


class Fixtures(object):
    """The config bytes (sha256 = image ID) of the images a fixture registry holds: `base`,
    `two`, and `other_config` and `host_config` of the multi-platform image."""


def push_fixture_images(server, base_layer, top_layer):
    """Push fix/base:1 and library/mirrored:1 (one layer), fix/two:1 (two layers) and fix/multi:1
    (an index for OTHER_ARCH and HOST_ARCH). base.tar and two.tar stay in the registry's directory
    for the tests that push them elsewhere. Returns their Fixtures."""
    fixtures = Fixtures()
    fixtures.base = docker_archive(os.path.join(server.directory, "base.tar"), [base_layer], label="base")
    fixtures.two = docker_archive(os.path.join(server.directory, "two.tar"), [base_layer, top_layer], label="two")
    for archive, repository_tag in (("base.tar", "fix/base:1"), ("two.tar", "fix/two:1"),
                                    ("base.tar", "library/mirrored:1")):
        skopeo_copy("docker-archive:" + os.path.join(server.directory, archive), server, repository_tag)
    layout = OCILayout(os.path.join(server.directory, "multi"))
    other, fixtures.other_config = layout.image([layer_tar({"arch": OTHER_ARCH.encode()})], OTHER_ARCH)
    host, fixtures.host_config = layout.image([layer_tar({"arch": HOST_ARCH.encode()})], HOST_ARCH)
    layout.index([other, host], "multi")
    skopeo_copy("oci:%s:multi" % layout.directory, server, "fix/multi:1", all_images=True)
    return fixtures


@contextlib.contextmanager
def fixture_registry(directory, base_layer, top_layer):
    """An open registry in `directory` holding push_fixture_images()'s images, which it keeps
    in its `fixtures`; stopped on exit."""
    server = Registry(directory).start()
    try:
        server.fixtures = push_fixture_images(server, base_layer, top_layer)
        yield server
    finally:
        server.stop()
