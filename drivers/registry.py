"""The registry package: which registry holds a repository, and how to talk to it (v2 protocol).

Docker 1.8.2 split this work in two. Its `registry` package (config.go, endpoint.go, auth.go,
service.go) decided, for a repository name, which registries to contact and how: Docker Hub
names go to the `--registry-mirror`s first and then to Hub; an `--insecure-registry` (and all of
127.0.0.0/8) is tried over HTTPS without certificate checks and then over plain HTTP; the CA and
client certificates for a host live in `/etc/docker/certs.d/<host>/`. It also did `docker login`.
The v2 protocol client came from docker/distribution (`registry/client`): the `/v2/` ping, token
auth answering `WWW-Authenticate` challenges, manifests, blobs, uploads and the registry's JSON
error codes (`errcode`).

pydockerd keeps both halves here, with the standard library only (http.client, ssl):

    RegistryService     registry.Service: endpoints, TLS settings, login, the /info block
    APIEndpoint         one place to try: a URL plus whether it is a mirror and checks TLS
    Repository          client.NewRepository: the v2 API of one repository on one endpoint
    Authorizer          auth.NewAuthorizer: Bearer tokens or Basic credentials for one endpoint
    Transport           the HTTP(S) round trip: TLS, proxies, timeouts, redirects
    RegistryError       errcode.Error: `manifest unknown: manifest unknown` and friends

drivers/distribution.py builds `docker pull` and `docker push` on top of this module.
Credentials travel only in Authorization headers and never appear in an error or a log line.
"""
import base64
import hashlib
import http.client
import ipaddress
import json
import os
import platform
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse

from drivers import errdefs

INDEX_NAME = "docker.io"
INDEX_SERVER = "https://index.docker.io/v1/"
DEFAULT_V2_REGISTRY = "https://registry-1.docker.io"
INDEX_HOSTNAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
DEFAULT_CERTS_DIR = "/etc/docker/certs.d"
DEFAULT_INSECURE_CIDR = "127.0.0.0/8"
DEFAULT_TIMEOUT = 30.0
AUTH_CLIENT_ID = "docker"
MAX_REDIRECTS = 10

USER_AGENT = "pydockerd python/%d.%d.%d os/linux arch/%s" % (sys.version_info[:3] + (platform.machine(),))


# ---------------------------------------------------------------------------------------------
# Errors: the registry's JSON error codes (errcode) and failed round trips (url.Error).

# errcode descriptors: the registry sends the code, the message is its default text.
ERROR_CODES = {
    "UNKNOWN": ("unknown error", 500),
    "UNSUPPORTED": ("The operation is unsupported.", 405),
    "UNAUTHORIZED": ("authentication required", 401),
    "DENIED": ("requested access to the resource is denied", 403),
    "UNAVAILABLE": ("service unavailable", 503),
    "TOOMANYREQUESTS": ("too many requests", 429),
    "BLOB_UNKNOWN": ("blob unknown to registry", 404),
    "BLOB_UPLOAD_UNKNOWN": ("blob upload unknown to registry", 404),
    "BLOB_UPLOAD_INVALID": ("blob upload invalid", 404),
    "DIGEST_INVALID": ("provided digest did not match uploaded content", 400),
    "MANIFEST_UNKNOWN": ("manifest unknown", 404),
    "MANIFEST_INVALID": ("manifest invalid", 400),
    "MANIFEST_BLOB_UNKNOWN": ("blob unknown to registry", 400),
    "NAME_INVALID": ("invalid repository name", 400),
    "NAME_UNKNOWN": ("repository name not known to registry", 404),
    "TAG_INVALID": ("manifest tag did not match URI", 400),
    "SIZE_INVALID": ("provided length did not match content length", 400),
}


class RegistryError(errdefs.DockerError):
    """errcode.Error: one error the registry reported, e.g. `denied: requested access ...`.

    Go prints the code in lower case with spaces, then the registry's message, which is how
    `manifest unknown: manifest unknown` reaches the user.
    """

    def __init__(self, code, message=None, detail=None):
        if code not in ERROR_CODES:
            code = "UNKNOWN"
        default_message, self.status = ERROR_CODES[code]
        self.code = code
        self.detail = detail
        self.registry_message = message or default_message
        super().__init__("%s: %s" % (code.lower().replace("_", " "), self.registry_message))


class UnexpectedHTTPResponse(errdefs.System):
    """client.UnexpectedHTTPResponseError: an error status whose body is not errcode JSON."""

    def __init__(self, status, parse_error, body):
        self.status_code = status
        super().__init__("error parsing HTTP %d response body: %s: %s"
                         % (status, parse_error, json.dumps(body.decode("utf-8", "replace"))))


class UnexpectedHTTPStatus(errdefs.System):
    """client.UnexpectedHTTPStatusError: a status the protocol does not allow here."""

    def __init__(self, status, reason):
        self.status_code = status
        super().__init__("received unexpected HTTP status: %d %s" % (status, reason))


class RequestError(errdefs.System):
    """url.Error: a request that got no usable answer, printed like Go: `Get "<url>": <cause>`.

    The cause is a dial or TLS failure, a timeout, or an authorization step that failed before
    the request could be sent (a token the token server refused, Basic credentials missing).
    Whatever the cause, it is a 500, as dockerd maps a url.Error: a 401 would make the CLI stop
    and prompt for a login in the middle of `docker pull`. Login looks at `cause` itself.
    """

    def __init__(self, method, url, cause):
        self.cause = cause
        super().__init__('%s "%s": %s' % (method.capitalize(), url, cause))


def parse_error_response(status, reason, headers, body):
    """HandleErrorResponse: turn an error answer into the most precise error it carries.

    An OAuth error in the Bearer challenge wins (`insufficient_scope` is how Hub says "no such
    repository, or not yours"), then the errcode JSON body, then Hub's older `{"details": ...}`.
    """
    if 400 <= status < 500:
        for value in headers.get_all("WWW-Authenticate") or ():
            scheme, params = parse_challenge(value)
            code = {"invalid_token": "UNAUTHORIZED", "insufficient_scope": "DENIED"}.get(params.get("error"))
            if scheme == "bearer" and code:
                return RegistryError(code, params.get("error_description"))
        return _parse_error_body(status, body)
    return UnexpectedHTTPStatus(status, reason)


def _parse_error_body(status, body):
    try:
        document = json.loads(body.decode("utf-8"))
    except ValueError as err:
        return _unparsable_error(status, body, str(err))
    if isinstance(document, dict) and isinstance(document.get("details"), str) and document["details"]:
        code = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}.get(status, "UNKNOWN")
        return RegistryError(code, document["details"])
    errors = document.get("errors") if isinstance(document, dict) else None
    if not errors or not isinstance(errors[0], dict):
        return _unparsable_error(status, body, "no error details found in HTTP response body")
    first = errors[0]
    return RegistryError(str(first.get("code", "UNKNOWN")), first.get("message"), first.get("detail"))


def _unparsable_error(status, body, parse_error):
    if status == 401:
        return RegistryError("UNAUTHORIZED")
    return UnexpectedHTTPResponse(status, parse_error, body)


# ---------------------------------------------------------------------------------------------
# Service configuration: mirrors, insecure registries, endpoints (registry/config.go, service.go)


class IndexInfo(object):
    """registry.IndexInfo: what the daemon knows about one registry (an entry of IndexConfigs)."""

    def __init__(self, name, mirrors=(), secure=True, official=False):
        self.name = name
        self.mirrors = list(mirrors)
        self.secure = secure
        self.official = official

    def to_json(self):
        return {"Name": self.name, "Mirrors": list(self.mirrors), "Secure": self.secure,
                "Official": self.official}


class APIEndpoint(object):
    """registry.APIEndpoint: one URL to try for a repository, in the order the service gives."""

    def __init__(self, url, tls_context, mirror=False, official=False):
        self.url = url.rstrip("/")
        self.tls_context = tls_context
        self.mirror = mirror
        self.official = official

    @property
    def host(self):
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def is_tls(self):
        return self.url.startswith("https://")

    def __repr__(self):
        return "APIEndpoint(%r, mirror=%r)" % (self.url, self.mirror)


def validate_mirror(value):
    """ValidateMirror: an http(s) URL with nothing after the host; stored with a trailing slash."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise errdefs.InvalidParameter("invalid mirror: unsupported scheme %s in %s"
                                       % (json.dumps(parts.scheme), value))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise errdefs.InvalidParameter("invalid mirror: path, query, or fragment at end of the URI %s"
                                       % json.dumps(value))
    if parts.username is not None:
        raise errdefs.InvalidParameter("invalid mirror: username/password not allowed in URI %s"
                                       % json.dumps(value))
    return value.rstrip("/") + "/"


def convert_to_hostname(server_address):
    """ConvertToHostname: `https://host:5000/v1/` -> `host:5000`, as the CLI's config keys them."""
    stripped = server_address
    for scheme in ("http://", "https://"):
        if stripped.startswith(scheme):
            stripped = stripped[len(scheme):]
    return stripped.split("/", 1)[0]


def normalize_index_name(hostname):
    """Every spelling of Docker Hub's host names the one index, docker.io."""
    return INDEX_NAME if hostname in INDEX_HOSTNAMES else hostname


class RegistryService(object):
    """registry.Service: the daemon's registry settings and the operations built on them.

    Interface (the API handlers and drivers/distribution.py call these):
      lookup_pull_endpoints(hostname) -> [APIEndpoint]   mirrors first for Docker Hub
      lookup_push_endpoints(hostname) -> [APIEndpoint]   never a mirror
      new_repository(endpoint, path, auth_config, actions) -> Repository
      login(auth_config) -> {"Status": "Login Succeeded", "IdentityToken": ...}
      info() -> the RegistryConfig block of GET /info
    `hub_endpoint` exists so tests can point Docker Hub at a loopback registry.
    """

    def __init__(self, mirrors=(), insecure_registries=(), certs_dir=DEFAULT_CERTS_DIR,
                 hub_endpoint=DEFAULT_V2_REGISTRY, timeout=DEFAULT_TIMEOUT, user_agent=USER_AGENT):
        self.mirrors = [validate_mirror(mirror) for mirror in mirrors]
        self.certs_dir = certs_dir
        self.hub_endpoint = hub_endpoint
        self.timeout = timeout
        self.user_agent = user_agent
        self.insecure_cidrs, self.index_configs = self._load_insecure_registries(insecure_registries)
        self._shared_contexts = {}
        self._contexts_lock = threading.Lock()

    def _load_insecure_registries(self, registries):
        """LoadInsecureRegistries: CIDRs go to one list, host[:port] names become IndexConfigs.

        127.0.0.0/8 is always insecure: dockerd's stop-gap for a private registry on localhost.
        """
        cidrs = []
        configs = {INDEX_NAME: IndexInfo(INDEX_NAME, self.mirrors, secure=True, official=True)}
        for entry in list(registries) + [DEFAULT_INSECURE_CIDR]:
            entry = re.sub(r"^https?://", "", entry, flags=re.IGNORECASE)
            network = _parse_cidr(entry)
            if network is not None:
                if str(network) not in cidrs:
                    cidrs.append(str(network))
            elif normalize_index_name(entry) == INDEX_NAME:
                configs[INDEX_NAME].secure = False
            else:
                configs[entry] = IndexInfo(entry, secure=False)
        return cidrs, configs

    def info(self):
        """The RegistryConfig block of /info, shaped like dockerd 20.10's."""
        return {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": list(self.insecure_cidrs),
            "IndexConfigs": {name: info.to_json() for name, info in sorted(self.index_configs.items())},
            "Mirrors": list(self.mirrors),
        }

    def is_secure(self, hostname):
        """isSecureIndex: named insecure registries, then whether the host's IPs are in a CIDR."""
        hostname = normalize_index_name(hostname)
        if hostname in self.index_configs:
            return self.index_configs[hostname].secure
        networks = [ipaddress.ip_network(cidr) for cidr in self.insecure_cidrs]
        return not any(address in network for address in _host_addresses(hostname)
                       for network in networks if address.version == network.version)

    def tls_context(self, hostname, secure):
        """newTLSConfig: verify against system roots plus certs.d/<host>/*.crt, or not at all.

        A host's directory may also hold a client certificate pair, `<name>.cert` + `<name>.key`.
        """
        host_dir = os.path.join(self.certs_dir, hostname)
        if not secure or not os.path.isdir(host_dir):
            return self._shared_context(secure)
        context = ssl.create_default_context()
        for name in sorted(os.listdir(host_dir)):
            path = os.path.join(host_dir, name)
            if name.endswith(".crt"):
                context.load_verify_locations(cafile=path)
            elif name.endswith(".cert"):
                key = path[:-len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise errdefs.System("missing key %s for client certificate %s. CA certificates "
                                         "must use the extension .crt" % (os.path.basename(key), name))
                context.load_cert_chain(path, key)
            elif name.endswith(".key") and not os.path.exists(path[:-len(".key")] + ".cert"):
                raise errdefs.System("missing client certificate %s.cert for key %s"
                                     % (name[:-len(".key")], name))
        return context

    def _shared_context(self, verify):
        """The plain verifying and non-verifying contexts, made once: loading the system CAs
        takes tens of milliseconds, and an SSLContext may serve many connections at once."""
        with self._contexts_lock:
            if verify not in self._shared_contexts:
                context = ssl.create_default_context()
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._shared_contexts[verify] = context
            return self._shared_contexts[verify]

    def lookup_pull_endpoints(self, hostname):
        """LookupPullEndpoints: for Docker Hub the mirrors come first; Hub itself is last."""
        hostname = normalize_index_name(hostname)
        if hostname != INDEX_NAME:
            return self._endpoints_for(hostname)
        return [self._endpoint(mirror, mirror=True) for mirror in self.mirrors] + self._hub_endpoints()

    def lookup_push_endpoints(self, hostname):
        """LookupPushEndpoints: the same places minus the mirrors (nobody pushes to a mirror)."""
        hostname = normalize_index_name(hostname)
        if hostname != INDEX_NAME:
            return self._endpoints_for(hostname)
        return self._hub_endpoints()

    def _hub_endpoints(self):
        """Docker Hub always gets full TLS verification (no insecure-registry lookup, no DNS)."""
        return [APIEndpoint(self.hub_endpoint, self._shared_context(True), official=True)]

    def _endpoints_for(self, hostname):
        """An ordinary registry is HTTPS; an insecure one may also be reached over plain HTTP."""
        secure = self.is_secure(hostname)
        endpoints = [APIEndpoint("https://" + hostname, self.tls_context(hostname, secure))]
        if not secure:
            endpoints.append(APIEndpoint("http://" + hostname, self._shared_context(True)))
        return endpoints

    def _endpoint(self, url, mirror=False, official=False):
        host = urllib.parse.urlsplit(url).netloc
        secure = self.is_secure(host) if url.startswith("https://") else True
        return APIEndpoint(url, self.tls_context(host, secure), mirror=mirror, official=official)

    def new_repository(self, endpoint, path, auth_config, actions):
        """NewRepository: a v2 client for `path` on `endpoint`, allowed `actions` (pull, push)."""
        transport = Transport(endpoint.tls_context, self.timeout, self.user_agent)
        scope = "repository:%s:%s" % (path, ",".join(actions))
        authorizer = Authorizer(transport, endpoint.url, auth_config, [scope])
        return Repository(transport, authorizer, endpoint.url, path)

    def login(self, auth_config):
        """Auth (registry/service.go): check credentials against the registry's /v2/.

        Endpoints are tried in order only while they cannot be reached at all; an answer from
        a registry, good or bad, is final. The identity token is the refresh token a token
        server may hand out (Docker Hub's web logins); plain registries give none.
        """
        auth_config = normalize_auth_config(auth_config)
        parse_server_address(auth_config.get("serveraddress") or INDEX_SERVER)
        hostname = convert_to_hostname(auth_config.get("serveraddress") or INDEX_SERVER)
        last_error = None
        for endpoint in self.lookup_push_endpoints(hostname):
            transport = Transport(endpoint.tls_context, self.timeout, self.user_agent)
            authorizer = Authorizer(transport, endpoint.url, auth_config, ["registry:catalog:*"],
                                    offline_access=True)
            try:
                authorizer.ping()
            except RequestError as err:
                last_error = err
                continue
            return {"Status": "Login Succeeded", "IdentityToken": _login_v2(transport, authorizer)}
        raise last_error


def _login_v2(transport, authorizer):
    """loginV2: GET /v2/ with the credentials; 200 means they are good.

    A token server that refuses the credentials fails the request itself; like dockerd's
    translateV2AuthError, that becomes an Unauthorized error.
    """
    url = authorizer.base_url + "/v2/"
    try:
        response = transport.request("GET", url, authorizer=authorizer)
    except RequestError as err:
        if getattr(err.cause, "status", None) == 401:
            raise errdefs.Unauthorized(str(err)) from None
        raise
    response.close()
    if response.status != 200:
        raise errdefs.Unauthorized("login attempt to %s failed with status: %d %s"
                                   % (url, response.status, response.reason))
    return authorizer.refresh_token or ""


def _parse_cidr(text):
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _host_addresses(hostname):
    """The IP addresses of a registry's host (port dropped); none if it does not resolve."""
    host = urllib.parse.urlsplit("//" + hostname).hostname or hostname
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def normalize_auth_config(auth_config):
    """types.AuthConfig from X-Registry-Auth: lower-case keys; `auth` (base64 user:pass) unpacked."""
    config = {str(key).lower(): value for key, value in (auth_config or {}).items()
              if isinstance(value, str)}
    if config.get("auth") and not config.get("username"):
        try:
            decoded = base64.b64decode(config["auth"]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise errdefs.InvalidParameter("invalid auth configuration file") from None
        config["username"], _, config["password"] = decoded.partition(":")
    return config


# ---------------------------------------------------------------------------------------------
# Transport: one HTTP(S) request at a time (registry.NewTransport + net/http's client)


class Response(object):
    """An HTTP answer whose body may still be streaming; close() also closes the connection."""

    def __init__(self, connection, response, url):
        self._connection = connection
        self._response = response
        self.url = url
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers

    def read(self, amount=None):
        return self._response.read(amount)

    def readinto(self, buffer):
        return self._response.readinto(buffer)

    def close(self):
        self._response.close()
        self._connection.close()


class Transport(object):
    """The round trip of every registry request, the way dockerd's registry transport works.

    One connection per request (dockerd sends `Connection: close` to registries too), a
    connect/read timeout so a dead registry fails in bounded time, HTTPS_PROXY/HTTP_PROXY/
    NO_PROXY from the environment (never for loopback, like Go), and redirects followed for
    GET and HEAD. The authorizer decides per URL whether to add credentials, so a redirect to
    another host (Docker Hub's blob CDN) never carries the Authorization header.
    """

    def __init__(self, tls_context, timeout, user_agent):
        self.tls_context = tls_context
        self.timeout = timeout
        self.user_agent = user_agent

    def request(self, method, url, headers=None, body=None, authorizer=None, scopes=()):
        for _ in range(MAX_REDIRECTS + 1):
            request_headers = {"User-Agent": self.user_agent, "Connection": "close"}
            request_headers.update(headers or {})
            credentials = self._authorize(authorizer, method, url, scopes)
            if credentials:
                request_headers["Authorization"] = credentials
            response = self._round_trip(method, url, request_headers, body)
            location = response.headers.get("Location")
            if response.status not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD") \
                    or not location:
                return response
            response.close()
            url = urllib.parse.urljoin(url, location)
        raise RequestError(method, url, "stopped after %d redirects" % MAX_REDIRECTS)

    @staticmethod
    def _authorize(authorizer, method, url, scopes):
        """Credentials for this hop; a failure to get them fails the request, as in Go."""
        if authorizer is None:
            return None
        try:
            return authorizer.authorization(url, scopes)
        except errdefs.DockerError as err:
            raise RequestError(method, url, err) from None

    def _round_trip(self, method, url, headers, body):
        parts = urllib.parse.urlsplit(url)
        try:
            connection, target = self._connection_for(parts)
        except (ValueError, http.client.InvalidURL):  # urlsplit's bad port, http.client's bad host
            raise RequestError(method, url, url_host_error(parts.netloc) or "invalid URL") from None
        try:
            self._connect(connection)
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException, UnicodeError) as err:
            connection.close()
            proxy = getattr(connection, "proxy_address", None)
            cause = _describe_network_error(err, proxy or parts.netloc, connection)
            if proxy and cause.startswith("dial "):
                # Go names the proxy it could not reach, not the registry behind it.
                cause = "proxyconnect tcp: " + cause
            raise RequestError(method, url, cause) from None
        return Response(connection, response, url)

    def _connection_for(self, parts):
        """An (unopened) connection for the URL, via a proxy when the environment names one."""
        default_port = 443 if parts.scheme == "https" else 80
        host, port = parts.hostname, parts.port or default_port
        proxy = proxy_for(parts.scheme, host)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        if proxy is None:
            if parts.scheme == "https":
                return http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                   context=self.tls_context), target
            return http.client.HTTPConnection(host, port, timeout=self.timeout), target
        proxy_headers = _proxy_authorization(proxy)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(proxy.hostname, proxy.port or 80, timeout=self.timeout,
                                                     context=self.tls_context)
            connection.set_tunnel(host, port, headers=proxy_headers)
        else:
            connection = _ProxiedHTTPConnection(proxy.hostname, proxy.port or 80, timeout=self.timeout)
            connection.proxy_headers = proxy_headers
            target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
        connection.proxy_address = "%s:%d" % (proxy.hostname, proxy.port or 80)
        return connection, target

    @staticmethod
    def _connect(connection):
        """Connect first, so a failure to connect is told apart from a registry that hangs."""
        connection.connect_failed = True
        connection.connect()
        connection.connect_failed = False


class _ProxiedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP through a proxy: absolute-form targets plus the proxy's own credentials."""

    proxy_headers = {}

    def putrequest(self, method, url, *args, **kwargs):
        super().putrequest(method, url, *args, **kwargs)
        for name, value in self.proxy_headers.items():
            self.putheader(name, value)


def proxy_for(scheme, host):
    """httpproxy.FromEnvironment: the proxy URL for a request, or None (always None for loopback)."""
    if _is_loopback(host):
        return None
    # imported on first use: 0.4 MB and 3 ms at start that a daemon needs only once it talks to a registry
    from urllib.request import getproxies_environment, proxy_bypass_environment
    proxies = getproxies_environment()
    proxy = proxies.get(scheme)
    if not proxy or proxy_bypass_environment(host, proxies):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    return urllib.parse.urlsplit(proxy)


def _proxy_authorization(proxy):
    if proxy.username is None:
        return {}
    pair = "%s:%s" % (urllib.parse.unquote(proxy.username), urllib.parse.unquote(proxy.password or ""))
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")}


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe_network_error(err, netloc, connection):
    """Go's words for a failed round trip, since the CLI shows them verbatim."""
    connecting = getattr(connection, "connect_failed", False)
    if isinstance(err, ConnectionRefusedError):
        return "dial tcp %s: connect: connection refused" % netloc
    if isinstance(err, socket.timeout):
        if connecting:
            return "dial tcp %s: i/o timeout" % netloc
        return "net/http: timeout awaiting response headers"
    if isinstance(err, (socket.gaierror, UnicodeError)):  # a host name IDNA cannot encode
        return "dial tcp: lookup %s: no such host" % urllib.parse.urlsplit("//" + netloc).hostname
    if isinstance(err, ssl.SSLCertVerificationError):
        return "tls: failed to verify certificate: x509: %s" % err.verify_message
    if isinstance(err, ssl.SSLError):
        if err.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST",
                          "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"):
            return "http: server gave HTTP response to HTTPS client"
        return "tls: %s" % str(err.reason or err).lower().replace("_", " ")
    if isinstance(err, http.client.RemoteDisconnected):
        return "EOF"
    if isinstance(err, OSError) and err.strerror:
        return "%s tcp %s: %s" % ("dial" if connecting else "read", netloc, err.strerror.lower())
    return str(err) or type(err).__name__


def url_host_error(netloc):
    """url.Parse's words for a host it refuses (as http.client and urlsplit do), else None."""
    if re.search(r"[\x00-\x1f\x7f]", netloc):
        return "net/url: invalid control character in URL"
    host = netloc.rpartition("@")[2]
    if host.startswith("["):  # an IPv6 literal; only a port may follow it
        if "]" not in host:
            return "missing ']' in host"
        host = host[host.index("]") + 1:]
    bad = re.search(r"[ \[\]]", host)
    if bad:
        return "invalid character %s in host name" % json.dumps(bad.group())
    port = re.search(r":([^:]+)$", host)
    if port and not port.group(1).isdigit():
        return "invalid port %s after host" % json.dumps(port.group())
    return None


def parse_server_address(address):
    """Auth's url.Parse of a login's server address (https:// unless it names a scheme)."""
    url = address if address.startswith(("https://", "http://")) else "https://" + address
    problem = url_host_error(re.split(r"[/?#]", url.split("://", 1)[1], 1)[0])
    if problem:
        raise errdefs.InvalidParameter('unable to parse server address: parse "%s": %s'
                                       % (url, problem))


# ---------------------------------------------------------------------------------------------
# Authorization: the /v2/ ping, challenges, token and basic handlers (registry/client/auth)


def parse_challenge(header):
    """challenge.ResponseChallenges for one header: ('bearer', {'realm': ..., 'service': ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for key, value in re.findall(r'([\w-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)', rest):
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return scheme.lower(), params


class Authorizer(object):
    """auth.NewAuthorizer: remembers an endpoint's challenges and answers them for each request.

    `ping()` sends an anonymous GET /v2/: a 401 carries `WWW-Authenticate: Bearer realm=...,
    service=...` (token auth) or `Basic realm=...`. After that every request to the same host gets
    a token for the repository scopes (fetched from the realm, with the user's credentials as
    Basic auth when there are any, and cached until it expires) or the Basic credentials.
    Requests to other hosts get nothing: that is how credentials stay off redirects.
    """

    def __init__(self, transport, base_url, auth_config, scopes, offline_access=False):
        self.transport = transport
        self.base_url = base_url.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base_url).netloc
        self.auth_config = normalize_auth_config(auth_config)
        self.scopes = list(scopes)
        self.offline_access = offline_access
        self.challenges = {}
        self.refresh_token = None
        self._tokens = {}
        self._lock = threading.Lock()

    def ping(self):
        """PingV2Registry: learn the challenges; raises RequestError if nothing answers.

        Returns True when the answer proves a v2 registry (200 or 401, or the API version
        header), which is what lets a pull stop falling back to the next endpoint.
        """
        response = self.transport.request("GET", self.base_url + "/v2/")
        response.close()
        if response.status == 401:
            for value in response.headers.get_all("WWW-Authenticate") or ():
                scheme, params = parse_challenge(value)
                self.challenges[scheme] = params
        version = response.headers.get("Docker-Distribution-API-Version", "")
        return response.status in (200, 401) or "registry/2.0" in version

    def authorization(self, url, extra_scopes=()):
        """The Authorization header for a request to `url`, or None."""
        if urllib.parse.urlsplit(url).netloc != self.host:
            return None
        if "bearer" in self.challenges:
            return "Bearer " + self._token(self.challenges["bearer"], tuple(self.scopes) + tuple(extra_scopes))
        if "basic" in self.challenges:
            username, password = self.auth_config.get("username"), self.auth_config.get("password")
            if not username or password is None:
                raise errdefs.Unauthorized("no basic auth credentials")
            pair = ("%s:%s" % (username, password)).encode("utf-8")
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return None

    def _token(self, challenge, scopes):
        if self.auth_config.get("registrytoken"):
            return self.auth_config["registrytoken"]
        with self._lock:
            token, expires = self._tokens.get(scopes, (None, 0))
            if token is None or time.monotonic() >= expires:
                token, lifetime = self._fetch_token(challenge, scopes)
                self._tokens[scopes] = (token, time.monotonic() + lifetime)
            return token

    def _fetch_token(self, challenge, scopes):
        """tokenHandler.fetchToken: OAuth POST with a refresh token, else GET with Basic auth."""
        realm = challenge.get("realm")
        if not realm:
            raise errdefs.System("no realm specified for token auth challenge")
        if self.auth_config.get("identitytoken"):
            response = self._post_refresh_token(realm, challenge.get("service"), scopes)
        else:
            response = self._get_token(realm, challenge.get("service"), scopes)
        try:
            body = response.read(1 << 20)
            if not 200 <= response.status < 300:
                raise parse_error_response(response.status, response.reason, response.headers, body)
        finally:
            response.close()
        return self._parse_token_response(body)

    def _get_token(self, realm, service, scopes):
        query = [("scope", scope) for scope in scopes]
        if service:
            query.append(("service", service))
        headers = {}
        username = self.auth_config.get("username")
        if username:
            query.append(("account", username))
            pair = ("%s:%s" % (username, self.auth_config.get("password", ""))).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
            if self.offline_access:
                query += [("offline_token", "true"), ("client_id", AUTH_CLIENT_ID)]
        separator = "&" if urllib.parse.urlsplit(realm).query else "?"
        return self.transport.request("GET", realm + separator + urllib.parse.urlencode(query),
                                      headers=headers)

    def _post_refresh_token(self, realm, service, scopes):
        form = {"grant_type": "refresh_token", "refresh_token": self.auth_config["identitytoken"],
                "client_id": AUTH_CLIENT_ID, "scope": " ".join(scopes)}
        if service:
            form["service"] = service
        if self.offline_access:
            form["access_type"] = "offline"
        return self.transport.request("POST", realm, body=urllib.parse.urlencode(form).encode("ascii"),
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})

    def _parse_token_response(self, body):
        try:
            document = json.loads(body.decode("utf-8"))
        except ValueError:
            raise errdefs.System("unable to decode token response") from None
        token = document.get("token") or document.get("access_token")
        if not token:
            raise errdefs.System("authorization server did not include a token in the response")
        if document.get("refresh_token"):
            self.refresh_token = document["refresh_token"]
        lifetime = document.get("expires_in")
        if not isinstance(lifetime, int) or lifetime < 60:
            lifetime = 60
        # Renew a little early so a token never expires between fetch and use.
        return token, lifetime - 10


# ---------------------------------------------------------------------------------------------
# Repository: manifests, blobs and uploads of one repository (registry/client/repository.go)

MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# Everything dockerd 20.10 accepts, in its order; schema 1 is asked for only to refuse it clearly.
MANIFEST_ACCEPT = ", ".join([MEDIA_TYPE_MANIFEST, MEDIA_TYPE_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
                             MEDIA_TYPE_SCHEMA1_SIGNED, "application/json", MEDIA_TYPE_OCI_MANIFEST])
MAX_MANIFEST_SIZE = 4 << 20


class Repository(object):
    """client.NewRepository: the v2 HTTP API of one repository, with authorization applied.

    Every method maps to one or two requests of the distribution spec; errors come back as
    RegistryError (the registry answered no) or RequestError (nothing usable answered).
    """

    def __init__(self, transport, authorizer, base_url, path):
        self.transport = transport
        self.authorizer = authorizer
        self.base_url = base_url.rstrip("/")
        self.path = path

    def ping(self):
        """GET /v2/: the endpoint is reachable and a v2 registry (True)."""
        return self.authorizer.ping()

    def _url(self, suffix):
        return "%s/v2/%s/%s" % (self.base_url, self.path, suffix)

    def _request(self, method, url, ok, headers=None, body=None, scopes=()):
        response = self.transport.request(method, url, headers=headers, body=body,
                                          authorizer=self.authorizer, scopes=scopes)
        if response.status in ok:
            return response
        try:
            error_body = b"" if method == "HEAD" else response.read(1 << 16)
        finally:
            response.close()
        raise parse_error_response(response.status, response.reason, response.headers, error_body)

    def manifest_digest(self, tag):
        """HEAD manifests/<tag>: the manifest's digest, or None when the registry will not say.

        A HEAD answer has no body to explain an error, so errors are left to the GET.
        """
        response = self.transport.request("HEAD", self._url("manifests/" + tag),
                                          headers={"Accept": MANIFEST_ACCEPT}, authorizer=self.authorizer)
        response.close()
        if response.status != 200:
            return None
        return response.headers.get("Docker-Content-Digest")

    def get_manifest(self, reference):
        """GET manifests/<tag or digest> -> (body, media type, Docker-Content-Digest or None)."""
        response = self._request("GET", self._url("manifests/" + reference), (200,),
                                 headers={"Accept": MANIFEST_ACCEPT})
        try:
            body = response.read(MAX_MANIFEST_SIZE + 1)
        finally:
            response.close()
        if len(body) > MAX_MANIFEST_SIZE:
            raise errdefs.System("manifest too big: more than %d bytes" % MAX_MANIFEST_SIZE)
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        return body, media_type, response.headers.get("Docker-Content-Digest")

    def tags(self):
        """GET tags/list, following `Link: <...>; rel="next"` from page to page: every tag."""
        tags, url = [], self._url("tags/list")
        while url:
            response = self._request("GET", url, (200,))
            try:
                listed = json.loads(response.read(MAX_MANIFEST_SIZE).decode("utf-8")).get("tags") or []
            except (UnicodeDecodeError, ValueError, AttributeError):
                raise errdefs.System("invalid tag list from %s" % url) from None
            finally:
                response.close()
            tags.extend(tag for tag in listed if isinstance(tag, str))
            url = _next_page(response)
        return tags

    def blob_url(self, digest):
        return self._url("blobs/" + digest)

    def open_blob(self, digest, offset=0):
        """GET blobs/<digest>, following redirects; from `offset` on to resume a download.

        Returns the streaming response: 200 (whole blob) or 206 (the rest, when resuming).
        """
        headers = {"Range": "bytes=%d-" % offset} if offset else {}
        return self._request("GET", self.blob_url(digest), (200, 206), headers=headers)

    def get_blob(self, digest, limit):
        """A small blob (an image config) read whole, at most `limit` bytes."""
        response = self.open_blob(digest)
        try:
            body = response.read(limit + 1)
        finally:
            response.close()
        if len(body) > limit:
            raise errdefs.System("blob %s is larger than %d bytes" % (digest, limit))
        return body

    def stat_blob(self, digest):
        """HEAD blobs/<digest>: its size if the repository has it, None if not."""
        response = self.transport.request("HEAD", self._url("blobs/" + digest), authorizer=self.authorizer)
        response.close()
        if response.status == 404:
            return None
        if response.status not in (200, 307):
            raise parse_error_response(response.status, response.reason, response.headers, b"")
        return int(response.headers.get("Content-Length") or 0)

    def start_upload(self, mount_digest=None, mount_from=None):
        """POST blobs/uploads/: an upload location, or None when a cross-repository mount worked.

        With `mount_from` the registry may link a blob it holds in another repository (201)
        instead of starting an upload (202); the token must then also allow pulling the source.
        """
        url = self._url("blobs/uploads/")
        scopes = ()
        if mount_from:
            url += "?" + urllib.parse.urlencode([("mount", mount_digest), ("from", mount_from)])
            scopes = ("repository:%s:pull" % mount_from,)
        response = self._request("POST", url, (201, 202), headers={"Content-Length": "0"}, scopes=scopes)
        response.close()
        if response.status == 201:
            return None
        return self._location(response)

    def upload_chunks(self, location, chunks):
        """PATCH <location> with a chunked body (an iterable of bytes); returns the next location."""
        response = self._request("PATCH", location, (202,), body=chunks,
                                 headers={"Content-Type": "application/octet-stream"})
        response.close()
        return self._location(response)

    def commit_upload(self, location, digest, body=b""):
        """PUT <location>?digest=: the registry checks the digest and publishes the blob."""
        separator = "&" if "?" in location else "?"
        url = location + separator + urllib.parse.urlencode([("digest", digest)])
        response = self._request("PUT", url, (201, 204), body=body,
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Length": str(len(body))})
        response.close()

    def put_blob(self, data):
        """Upload a small blob (an image config) in one POST + PUT; returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.commit_upload(self.start_upload(), digest, data)
        return digest

    def put_manifest(self, tag, body, media_type):
        """PUT manifests/<tag>."""
        response = self._request("PUT", self._url("manifests/" + tag), (201, 202), body=body,
                                 headers={"Content-Type": media_type, "Content-Length": str(len(body))})
        response.close()
        return response.headers.get("Docker-Content-Digest")

    def _location(self, response):
        location = response.headers.get("Location")
        if not location:
            raise errdefs.System("registry did not return an upload location")
        return urllib.parse.urljoin(response.url, location)


def _next_page(response):
    """The `rel="next"` URL of a paginated answer's Link header, or None on the last page."""
    match = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', response.headers.get("Link") or "")
    return urllib.parse.urljoin(response.url, match.group(1)) if match else None
