"""The legacy builder: `docker build` as dockerd 20.10 runs it without BuildKit.

Docker 1.8.2 built images inside the daemon (the `builder` package); today's dockerd still
does when the client asks for the legacy builder (`POST /build?version=1`, what the CLI sends
with DOCKER_BUILDKIT=0 or without buildx). This module is builder/dockerfile with the
pieces it leans on (build args, the image cache, image sources); the Dockerfile language is
drivers/dockerfile.py, the sources COPY reads are drivers/buildcontext.py.

A build, step by step (Builder.build):

  1. The context tar is unpacked under <root>/tmp, its Dockerfile read, its .dockerignore
     applied (buildcontext). The Dockerfile is parsed into stages; ARGs before the first
     FROM are meta args. `--target` picks the last stage to build; a stage that the target
     does not need (through FROM <stage> or COPY --from) is skipped, as BuildKit does (the
     legacy builder built them all). `--label`s become LABEL steps of the last stage.
  2. Every step prints "Step N/M : <line>", runs, and prints " ---> <image ID>": each step
     leaves an image, whose parent is the previous step's, and the next step starts from it.
     At the end of each stage the image ID goes out as an `aux` message; at the end the
     build prints "Successfully built <id>" and tags the last image.
  3. How a step makes its image:
       RUN                 a container, made, started and waited for through the daemon's
                           ordinary container operations (so events, networks and the exec
                           driver are the same as `docker run`); its output streams into the
                           build; a non-zero exit ends the build with the code. The
                           container's changes are committed as the step's layer.
       COPY, ADD, WORKDIR  a writable layer on the previous image (no container: nothing
                           runs), the files put in it, committed.
       anything else       only the config changes: the image has no new layer (its history
                           entry says `empty_layer`). dockerd 20.10 made and removed a
                           throwaway container for these too; its layer was always empty.
     Each image's `container_config.Cmd` records the step, which is what `docker history`
     shows: "/bin/sh -c echo hi" for a RUN, "/bin/sh -c #(nop)  CMD [\"sh\"]" for a config
     step, "/bin/sh -c #(nop) COPY file:<sum> in /dst " for a copy (<sum>: the checksum of
     what was copied, see buildcontext).
  4. The build cache (image/cache): before running a step, the builder looks for an image
     whose parent is the current image and whose container_config is the step's (same Cmd,
     Env, Labels, ...; for COPY the checksum is in the Cmd, so a changed file misses). A hit
     prints " ---> Using cache" and skips the step; after the first miss of a stage nothing
     more is looked up. `--no-cache` never looks; `--cache-from` images are also matched by
     their history, so an image pulled from a registry (which has no parent links) can serve.
  5. Intermediate containers are removed after each successful step (`rm`, the default), or
     after every step, failed ones included (`forcerm`). A failed RUN's container is kept
     otherwise, as dockerd keeps it, for the user to inspect.

Build args (ARG, --build-arg): an ARG makes a name usable in the stage, with its default
unless --build-arg gives a value; its value is in RUN's environment and is recorded in the
RUN's history line ("|1 FOO=bar /bin/sh -c ..."), so a different value misses the cache.
HTTP_PROXY, HTTPS_PROXY, FTP_PROXY, NO_PROXY (either case) are predefined: usable without an
ARG, never recorded in the image unless the Dockerfile declares them.

The builder reaches the daemon only through the collaborators it is given (it never imports
pydockerd): the graph (drivers.graph.Graph: images, layers), and a backend with the
container operations:

    backend.create_container(config, host_config) -> (container ID, [warnings])
    backend.run_container(container_id, stdout, stderr, cancelled) -> exit code
          stdout(bytes)/stderr(bytes) receive the output; `cancelled()` is polled, and when
          it says so the container is killed and BuildCancelled raised
    backend.remove_container(container_id)           forced, volumes too
    backend.pull_image(name, platform, progress) -> Image   (progress: a message sink)
"""
import copy
import hashlib
import json
import os
import posixpath
import re
import secrets
import signal
import stat

from drivers import archive, buildcontext, commit, dockerfile
from drivers.errdefs import DockerError, InvalidParameter, NotFound
from drivers.graph import container_config_shape, glob_match, go_json, sorted_dict, truncate_id
from drivers.linux import go_arch
from drivers.reference import parse_normalized_named

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRATCH = "scratch"
BUILTIN_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                "ftp_proxy", "NO_PROXY", "no_proxy")
BUILDKIT_HINT = "Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
STDERR_COLOUR = ("\033[91m", "\033[0m")
# The config-only instructions `docker commit --change` and `docker import --change` accept.
COMMIT_CHANGES = ("cmd", "entrypoint", "healthcheck", "env", "expose", "label", "onbuild",
                  "user", "volume", "workdir")


class BuildError(DockerError):
    """A build that failed half way; `code` is a failed RUN's exit code (the CLI's)."""

    status = 500

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


class BuildCancelled(BuildError):
    """The client went away: the build stops and cleans up."""


# ---------------------------------------------------------------------------------------------
# Options: the query of POST /build
# ---------------------------------------------------------------------------------------------

def _query_bool(query, name, default=False):
    """httputils.BoolValue: anything but "", 0, no, false and none is true."""
    values = query.get(name)
    if not values:
        return default
    return values[-1].strip().lower() not in ("", "0", "no", "false", "none")


def _query_int(query, name):
    """An integer the API server has already checked (drivers/jsontypes.py check_query)."""
    text = (query.get(name) or [""])[-1]
    return int(text) if text else 0


def _query_json(query, name, kind, what):
    text = (query.get(name) or [""])[-1]
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as err:
        raise InvalidParameter("error reading %s: %s" % (what, err)) from None
    if not isinstance(value, kind):
        raise InvalidParameter("error reading %s: not a JSON %s" % (what, kind.__name__))
    return value


class BuildOptions(object):
    """types.ImageBuildOptions, from the query of POST /build (newImageBuildOptions).

    Resource limits for RUN (memory, cpu*, cgroupparent, ulimits, shmsize) are kept as a
    HostConfig fragment in `resources`; whether the daemon can honour them is its call.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @classmethod
    def from_query(cls, query):
        """Parse and check the query (a dict of value lists); InvalidParameter names the
        first thing wrong, before anything is read or made."""
        version = (query.get("version") or ["1"])[-1]
        if version == "2":  # the API server refused any version but 1 and 2
            raise InvalidParameter("BuildKit is not supported by pydockerd: build with the legacy "
                                   "builder (DOCKER_BUILDKIT=0)")
        if _query_bool(query, "squash"):
            raise InvalidParameter("squash is only supported with experimental mode")
        if query.get("securityopt"):
            raise InvalidParameter("The daemon on this platform does not support setting "
                                   "security options on build")
        isolation = (query.get("isolation") or [""])[-1]
        if isolation not in ("", "default"):
            raise InvalidParameter('Unsupported isolation: "%s"' % isolation)
        for name in ("outputs", "session"):
            if (query.get(name) or [""])[-1]:
                raise InvalidParameter("%s is a BuildKit option: pydockerd's legacy builder does "
                                       "not support it" % name)
        build_args = _query_json(query, "buildargs", dict, "build args")
        labels = _query_json(query, "labels", dict, "labels")
        cache_from = _query_json(query, "cachefrom", list, "cache from")
        resources = {key: value for key, value in (
            ("Memory", _query_int(query, "memory")), ("MemorySwap", _query_int(query, "memswap")),
            ("CpuShares", _query_int(query, "cpushares")), ("CpuPeriod", _query_int(query, "cpuperiod")),
            ("CpuQuota", _query_int(query, "cpuquota")),
            ("CpusetCpus", (query.get("cpusetcpus") or [""])[-1]),
            ("CpusetMems", (query.get("cpusetmems") or [""])[-1]),
            ("CgroupParent", (query.get("cgroupparent") or [""])[-1]),
            ("Ulimits", _query_json(query, "ulimits", list, "ulimit settings")),
            ("ShmSize", _query_int(query, "shmsize"))) if value}
        force_remove = _query_bool(query, "forcerm")
        return cls(
            dockerfile=(query.get("dockerfile") or [""])[-1] or buildcontext.DEFAULT_DOCKERFILE,
            tags=parse_tags(query.get("t") or []), quiet=_query_bool(query, "q"),
            no_cache=_query_bool(query, "nocache"), pull=_query_bool(query, "pull"),
            remove=force_remove or _query_bool(query, "rm", default=True), force_remove=force_remove,
            build_args=build_args, labels=labels, cache_from=cache_from,
            target=(query.get("target") or [""])[-1],
            network_mode=(query.get("networkmode") or [""])[-1],
            extra_hosts=list(query.get("extrahosts") or []), platform=(query.get("platform") or [""])[-1],
            remote=(query.get("remote") or [""])[-1], resources=resources)


def parse_tags(names):
    """sanitizeRepoAndTags: the `t` values as references with a tag, each once."""
    refs, seen = [], set()
    for name in names:
        if not name:
            continue
        ref = parse_normalized_named(name)
        if ref.digest is not None:
            raise InvalidParameter("build tag cannot contain a digest")
        ref = ref.with_default_tag()
        if str(ref) not in seen:
            seen.add(str(ref))
            refs.append(ref)
    return refs


# ---------------------------------------------------------------------------------------------
# Output: the JSON stream the client reads
# ---------------------------------------------------------------------------------------------

class Output(object):
    """The build's progress writers (streamformatter): `stdout`/`stderr` text becomes
    {"stream": ...} messages (stderr in red, as dockerd colours it), `aux` an {"aux": ...}
    message, `progress` passes a progress message through. One write, one message."""

    def __init__(self, send):
        self.send = send

    def stdout(self, text):
        self.send({"stream": text})

    def stderr(self, text):
        self.send({"stream": STDERR_COLOUR[0] + text + STDERR_COLOUR[1]})

    def aux(self, value):
        self.send({"aux": value})

    def progress(self, message):
        self.send(message)


# ---------------------------------------------------------------------------------------------
# Build args (builder/dockerfile/buildargs.go)
# ---------------------------------------------------------------------------------------------

class BuildArgs(object):
    """The ARGs a stage may use, the meta args, the ones the Dockerfile referenced, and the
    values the client gave (`from_options`: name -> value or None)."""

    def __init__(self, from_options):
        self.from_options = dict(from_options or {})
        self.allowed = {}
        self.meta = {}
        self.referenced = set()

    def clone_for_stage(self):
        """A new stage: the meta args and references carry over, the allowed args do not."""
        other = BuildArgs(self.from_options)
        other.meta = dict(self.meta)
        other.referenced = set(self.referenced)
        return other

    def add(self, name, default):
        self.allowed[name] = default
        self.referenced.add(name)

    def add_meta(self, name, default):
        self.meta[name] = default

    def _value(self, name, mapping):
        if self.from_options.get(name) is not None:
            return self.from_options[name]
        default = mapping.get(name)
        if default is None:
            return self.meta.get(name)
        return default

    def _all(self, mapping):
        values = {}
        for name in list(mapping) + list(BUILTIN_ARGS):
            value = self._value(name, mapping)
            if value is not None or (name in mapping and mapping[name] is not None):
                values[name] = value
        return values

    def all_allowed(self):
        """GetAllAllowed: name -> value of every arg usable now (builtins if given)."""
        return self._all(self.allowed)

    def all_meta(self):
        """GetAllMeta: what FROM lines may use."""
        return self._all(self.meta)

    def filter_allowed(self, env):
        """FilterAllowed: the allowed args not shadowed by an ENV, as "K=v"."""
        names = dockerfile.env_map(env or [])
        return ["%s=%s" % (name, value) for name, value in sorted(self.all_allowed().items())
                if name not in names]

    def kept_in_image(self, name):
        """IsReferencedOrNotBuiltin: a proxy arg is recorded only when declared."""
        return name in self.allowed or name not in BUILTIN_ARGS

    def unused(self):
        """The --build-args no ARG consumed (the end-of-build warning)."""
        return sorted(name for name in self.from_options
                      if name not in self.referenced and name not in BUILTIN_ARGS)


# ---------------------------------------------------------------------------------------------
# The image cache (image/cache): reuse an image made by the same step on the same parent
# ---------------------------------------------------------------------------------------------

def same_config(a, b):
    """cache.compare: the container configs match for the cache (Image and Hostname aside)."""
    if a is None or b is None or a.get("OpenStdin") or b.get("OpenStdin"):
        return False
    if (a.get("User") or "") != (b.get("User") or ""):
        return False
    if any(bool(a.get(key)) != bool(b.get(key)) for key in ("AttachStdout", "AttachStderr", "Tty")):
        return False
    for key in ("Cmd", "Env", "Entrypoint"):
        if list(a.get(key) or []) != list(b.get(key) or []):
            return False
    labels_a, labels_b = a.get("Labels") or {}, b.get("Labels") or {}
    if len(labels_a) != len(labels_b) or any(labels_b.get(k) != v for k, v in labels_a.items()):
        return False
    return all(set(a.get(key) or {}) == set(b.get(key) or {}) for key in ("ExposedPorts", "Volumes"))


class ImageCache(object):
    """The cache the builder probes: the local one (children of the parent image), and with
    --cache-from the named images, matched step by step against their history."""

    def __init__(self, graph, cache_from, warn):
        self.graph = graph
        self.sources = []
        for name in cache_from:
            try:
                self.sources.append(graph.lookup(name))
            except (NotFound, InvalidParameter) as err:
                warn("Could not look up %s for cache resolution, skipping: %s" % (name, err))

    def get(self, parent_id, config):
        """GetCache: the ID of a cached image for the step, or None."""
        local = self._local(parent_id, config)
        if not self.sources:
            return local
        if local and any(self._descends(source.id, local) for source in self.sources):
            return local
        parent = self.graph.lookup(parent_id) if parent_id else None
        depth = len(parent.history) if parent else 0
        for target in self.sources:
            if not _valid_parent(target, parent) or depth >= len(target.history) or \
                    " ".join(config.get("Cmd") or []) != target.history[depth].get("created_by", ""):
                continue
            if depth == len(target.history) - 1:
                if parent is not None:
                    self.graph.store.set_parent(target.id, parent.id)
                return target.id
            self.sources = [target]  # from here on, follow this one
            return self._restore(parent, target, config, depth)
        return None

    def _local(self, parent_id, config):
        """getLocalCachedImage: the newest child of the parent made with the same config."""
        if parent_id:
            children = [self.graph.store.get(child) for child in self.graph.store.children(parent_id)]
        else:
            children = [image for image in self.graph.store.all_images() if not image.parent]
        matches = [image for image in children
                   if image is not None and same_config(image.config.get("container_config"), config)]
        return max(matches, key=lambda image: image.created.instant).id if matches else None

    def _descends(self, image_id, ancestor_id):
        image = self.graph.store.get(image_id)
        while image is not None and image.parent:
            if image.parent == ancestor_id:
                return True
            image = self.graph.store.get(image.parent)
        return False

    def _restore(self, parent, target, config, depth):
        """restoreCachedImage: an image of the target's history and layers up to `depth`."""
        history = (list(parent.history) if parent else []) + [target.history[depth]]
        diff_ids = list(parent.diff_ids) if parent else []
        layer = _layer_for_history(target, depth)
        if layer:
            diff_ids.append(layer)
        rootfs = {"type": "layers"}
        if diff_ids:
            rootfs["diff_ids"] = diff_ids
        fields = {"architecture": target.config.get("architecture", ""), "config": config,
                  "container_config": container_config_shape({}),
                  "created": history[-1].get("created"), "history": history, "os": target.os,
                  "rootfs": rootfs, "docker_version": self.graph.docker_version}
        fields.update((key, target.config[key]) for key in ("author", "os.version", "os.features")
                      if target.config.get(key))
        raw = go_json(sorted_dict(fields))
        return self.graph.create_image(raw, parent.id if parent else None)


def _valid_parent(image, parent):
    """isValidParent: `image` continues `parent`'s history and layers exactly."""
    if not image.history:
        return False
    if parent is None or (not parent.history and not parent.diff_ids):
        return True
    if len(parent.history) >= len(image.history) or len(parent.diff_ids) > len(image.diff_ids):
        return False
    return image.history[:len(parent.history)] == parent.history and \
        image.diff_ids[:len(parent.diff_ids)] == parent.diff_ids


def _layer_for_history(image, index):
    """getLayerForHistoryIndex: the diff ID of history entry `index`, or None if empty."""
    if image.history[index].get("empty_layer"):
        return None
    return image.diff_ids[sum(1 for item in image.history[:index] if not item.get("empty_layer"))]


class Prober(object):
    """imageProber: probes the cache until the first miss of a stage; reset() per stage."""

    def __init__(self, graph, options, warn):
        self.make = (lambda: None) if options.no_cache else \
            (lambda: ImageCache(graph, options.cache_from, warn))
        self.cache = self.make()
        self.busted = False

    def reset(self):
        self.cache = self.make()
        self.busted = False

    def probe(self, parent_id, config):
        if self.cache is None or self.busted:
            return None
        found = self.cache.get(parent_id, config)
        self.busted = found is None
        return found


# ---------------------------------------------------------------------------------------------
# The dispatch state of a stage (evaluator.go: dispatchState)
# ---------------------------------------------------------------------------------------------

class State(object):
    """What the steps of a stage change: the run config (a container.Config dict), the
    image so far, the maintainer, whether CMD was set, and the stage's build args."""

    def __init__(self, build_args):
        self.run_config = {}
        self.image_id = ""
        self.maintainer = ""
        self.cmd_set = False
        self.stage_name = ""
        self.build_args = build_args

    def begin(self, name, image):
        """beginStage: the image's config (copied), PATH defaulted, stdin closed."""
        self.stage_name = name
        self.image_id = image.id if image else ""
        self.run_config = copy.deepcopy(image.container_config or {}) if image else {}
        if "PATH" not in dockerfile.env_map(self.run_config.get("Env") or []):
            self.run_config["Env"] = list(self.run_config.get("Env") or []) + ["PATH=" + DEFAULT_PATH]
        self.run_config["OpenStdin"] = self.run_config["StdinOnce"] = False

    def env(self):
        """The words' environment: ENV, then the allowed args ENV does not shadow."""
        env = list(self.run_config.get("Env") or [])
        return env + self.build_args.filter_allowed(env)

    def shell(self):
        return list(self.run_config.get("Shell") or DEFAULT_SHELL)

    def config_with(self, **changes):
        """copyRunConfig with modifiers: a copy of the run config, some keys replaced."""
        config = copy.deepcopy(self.run_config)
        config.update(changes)
        return config


def normalize_workdir(current, requested):
    """normalizeWorkdir: a relative WORKDIR continues the current one."""
    if not requested:
        raise InvalidParameter("cannot normalize nothing")
    if requested.startswith("/"):
        return posixpath.normpath(requested)
    return posixpath.normpath(posixpath.join("/", current or "", requested))


def normalize_dest(workdir, dest):
    """normalizeDest: a relative COPY destination is under the WORKDIR; a trailing / stays."""
    if dest.startswith("/"):
        return dest
    joined = posixpath.normpath(posixpath.join("/", workdir or "", dest))
    return joined + "/" if dest.endswith("/") and joined != "/" else joined


def resolve_cmd_line(command, state):
    """resolveCmdLine: the shell form run by the stage's SHELL."""
    words = command.command
    if command.prepend_shell and words is not None:
        return state.shell() + list(words)
    return words


def prepend_env_on_cmd(build_args, args_env, cmd):
    """prependEnvOnCmd: "|N K=v ..." before a RUN's command in its history and cache key,
    with the unreferenced proxy args left out."""
    kept = sorted(entry for entry in args_env if build_args.kept_in_image(entry.split("=", 1)[0]))
    return ["|%d" % len(kept)] + kept + list(cmd)


def go_list(words, quote=False):
    """fmt's %v (or %q) of a []string: [a b] (or ["a" "b"])."""
    return "[" + " ".join(dockerfile.go_quote(word) if quote else word for word in words) + "]"


def health_text(health):
    """fmt's %q of a *HealthConfig, as dockerd writes HEALTHCHECK into the history: the
    durations as strings, the retry count as a character literal ('\\x03')."""
    durations = " ".join(dockerfile.go_quote(dockerfile.format_duration(health.get(key) or 0))
                         for key in ("Interval", "Timeout", "StartPeriod"))
    return "&{%s %s %s}" % (go_list(health.get("Test") or [], quote=True), durations,
                            go_quote_rune(health.get("Retries") or 0))


_RUNE_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r",
                 39: "\\'", 92: "\\\\"}


def go_quote_rune(number):
    """strconv.QuoteRune: 'A', '\\n', '\\x03'."""
    if number in _RUNE_ESCAPES:
        return "'%s'" % _RUNE_ESCAPES[number]
    if number < 0x20 or number == 0x7f:
        return "'\\x%02x'" % number
    return "'%s'" % chr(number)


# ---------------------------------------------------------------------------------------------
# The builder
# ---------------------------------------------------------------------------------------------

class CopyInfo(object):
    """copyInfo: one thing to copy, from `source` at `path` (as written), resolved to `rel`,
    with its checksum; `no_decompress` for downloads (ADD never unpacks those)."""

    def __init__(self, source, path, rel, is_dir, checksum, no_decompress=False):
        self.source = source
        self.path = path
        self.rel = rel
        self.is_dir = is_dir
        self.checksum = checksum
        self.no_decompress = no_decompress


class Builder(object):
    """One build: Builder(options, backend, graph, tmp_dir, output, cancelled).build(body)
    -> image ID. `body` is the context tar stream (unused with a remote context)."""

    def __init__(self, options, backend, graph, tmp_dir, output, cancelled):
        self.options = options
        self.backend = backend
        self.graph = graph
        self.tmp_dir = tmp_dir
        self.out = output
        self.cancelled = cancelled
        self.prober = Prober(graph, options, lambda text: output.stderr(text + "\n"))
        self.containers = []      # intermediate containers not yet removed
        self.sources = []         # temporary sources to close at the end
        self.images = {}          # name -> Image, for FROM and COPY --from
        self.built = {}           # stage index -> (name, image ID) of finished stages
        self.escape = dockerfile.DEFAULT_ESCAPE

    # -- the build --------------------------------------------------------------------------

    def build(self, body):
        try:
            context, text = self._context(body)
            image_id = self._run(context, text)
        finally:
            for source in self.sources:
                source.close()
        self.out.stdout("Successfully built %s\n" % truncate_id(image_id))
        with self.graph.tagging(self.options.tags) as pending:
            pending.record(image_id)    # every tag moves, or (after a kill) none
            for ref in self.options.tags:
                self.graph.tag(image_id, ref.name, ref.tag)
                self.out.stdout("Successfully tagged %s\n" % ref.familiar_string())
        return image_id

    def _context(self, body):
        """Detect: the context Source (or None) and the Dockerfile's text."""
        if self.options.remote:
            context, text = buildcontext.remote_context(self.options.remote, self.tmp_dir)
        else:
            context, text = buildcontext.context_from_archive(body, self.tmp_dir), None
        if context is None:
            return None, text
        self.sources.append(context)
        text = buildcontext.read_dockerfile(context, self.options.dockerfile)
        buildcontext.apply_dockerignore(context)
        return context, text

    def _run(self, context, text):
        try:
            result = dockerfile.parse(text)
        except dockerfile.DockerfileError as err:
            raise InvalidParameter("failed to parse %s: %s" % (self.options.dockerfile, err)) from None
        self.escape = result.escape
        stages, meta_args = dockerfile.parse_stages(result)
        wanted = []
        if stages:
            target = self._target(stages)
            analysis = BuildArgs(self.options.build_args)
            self._meta_args(meta_args, analysis)
            meta_env = ["%s=%s" % item for item in analysis.all_meta().items()]
            wanted = needed_stages(stages, target, meta_env)
            self._add_labels(stages[target])
        for warning in result.warnings:
            self.out.stderr(warning + "\n")
        total = len(meta_args) + sum(1 + len(stages[index].commands) for index in wanted)
        step = Steps(self.out, total)
        build_args = BuildArgs(self.options.build_args)
        self._meta_args(meta_args, build_args, step)
        state = None
        for index in wanted:
            state = self._build_stage(step, index, stages[index], context, build_args)
        unused = build_args.unused()
        if unused:
            self.out.stdout("[Warning] One or more build-args %s were not consumed\n" % go_list(unused))
        if state is None or not state.image_id:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        return state.image_id

    def _target(self, stages):
        if not self.options.target:
            return len(stages) - 1
        for index, stage in enumerate(stages):
            if stage.name == self.options.target.lower():
                return index
        raise InvalidParameter("failed to reach build target %s in Dockerfile" % self.options.target)

    def _add_labels(self, stage):
        """buildLabelOptions: one LABEL step per --label, sorted, never expanded."""
        for key in sorted(self.options.labels):
            code = "LABEL %s=%s" % (key, self.options.labels[key])
            stage.commands.append(dockerfile.Command("label", code, 0, pairs=[(key, self.options.labels[key])],
                                                     no_expand=True))

    def _meta_args(self, meta_args, build_args, step=None):
        """processMetaArg: the ARGs before the first FROM, as steps when `step` counts them
        (once quietly before, so the stage analysis sees FROM lines as they will be)."""
        for command in meta_args:
            if step is not None:
                step.announce(command)
            env = ["%s=%s" % item for item in build_args.all_allowed().items()]
            for name, default in expand_command(command, env, self.escape).args:
                build_args.add(name, default)
                build_args.add_meta(name, default)

    def _build_stage(self, step, index, stage, context, build_args):
        if stage.name and any(name == stage.name for name, _ in self.built.values()):
            raise BuildError("%s stage name already used" % stage.name)
        state = State(build_args.clone_for_stage())
        step.announce(stage)
        self._initialize_stage(state, stage, context, index)
        self.out.stdout(" ---> %s\n" % truncate_id(state.image_id))
        for command in stage.commands:
            if self.cancelled():
                self.out.stdout("Build cancelled\n")
                raise BuildCancelled("Build cancelled")
            step.announce(command)
            self.dispatch(state, command, context, index)
            self.out.stdout(" ---> %s\n" % truncate_id(state.image_id))
        if state.image_id:
            self.out.aux({"ID": state.image_id})
        build_args.referenced |= state.build_args.referenced
        self.built[index] = (state.stage_name, state.image_id)
        return state

    # -- FROM ----------------------------------------------------------------------------------

    def _initialize_stage(self, state, stage, context, index):
        """initializeStage: the base image (a stage, scratch, local or pulled), then the
        base's ONBUILD triggers."""
        self.prober.reset()
        meta = ["%s=%s" % item for item in state.build_args.all_meta().items()]
        lex = dockerfile.ShellLex(self.escape)
        platform = lex.process_word(stage.platform, meta) if stage.platform else self.options.platform
        check_platform(platform)
        name = lex.process_word(stage.base, meta)
        if not name:
            raise BuildError("base name (%s) should not be blank" % stage.base)
        state.begin(stage.name, self._base_image(name, platform, index))
        triggers = state.run_config.get("OnBuild") or []
        state.run_config["OnBuild"] = None
        if triggers:
            self.out.stdout("# Executing %d build trigger%s\n" % (len(triggers), "s" if len(triggers) > 1 else ""))
        for trigger in triggers:
            self.dispatch(state, trigger_command(trigger), context, index)

    def _base_image(self, name, platform, index):
        for built_index, (stage_name, image_id) in self.built.items():
            if stage_name and stage_name == name.lower() and built_index < index:
                return self.graph.lookup(image_id) if image_id else None
        if name.lower() == SCRATCH:
            return None
        return self.image(name, platform)

    def image(self, name, platform=""):
        """imageSources.Get: an image by name or ID, pulled when it is not here (always
        with --pull), checked against the platform asked for."""
        if name in self.images:
            return self.images[name]
        found = None
        if not self.options.pull:
            try:
                found = self.graph.lookup(name)
            except NotFound:
                found = None
        if found is None:
            found = self.backend.pull_image(name, platform or None, self.out.progress)
        check_image_platform(found, name, platform)
        self.images[name] = found
        return found

    # -- dispatch (evaluator.go) ---------------------------------------------------------------

    def dispatch(self, state, command, context, stage_index):
        """Run one command: expand its words, call its dispatcher, then remove the
        intermediate containers (always with forcerm, on success with rm)."""
        state.run_config["Image"] = state.image_id
        succeeded = False
        try:
            command = expand_command(command, state.env(), self.escape)
            DISPATCHERS[command.name](self, state, command, context, stage_index)
            succeeded = True
        except BuildCancelled:
            self.remove_containers()  # the killed RUN's container goes with the build
            raise
        finally:
            if self.options.force_remove or (self.options.remove and succeeded):
                self.remove_containers()
        state.run_config["Image"] = state.image_id

    def remove_containers(self):
        """containerManager.RemoveAll."""
        while self.containers:
            container_id = self.containers[0]
            try:
                self.backend.remove_container(container_id)
            except DockerError as err:
                self.out.stdout("Error removing intermediate container %s: %s\n" % (truncate_id(container_id), err))
                return
            self.containers.pop(0)
            self.out.stdout("Removing intermediate container %s\n" % truncate_id(container_id))

    # -- committing ----------------------------------------------------------------------------

    def probe(self, state, config):
        """probeCache: on a hit the step is done, with the cached image."""
        cached = self.prober.probe(state.image_id, config)
        if cached:
            self.out.stdout(" ---> Using cache\n")
            state.image_id = cached
        return bool(cached)

    def commit(self, state, comment):
        """commit: a config-only step, recorded as "#(nop) <comment>", with no layer."""
        config = state.config_with(Cmd=state.shell() + ["#(nop) ", comment])
        if self.probe(state, config):
            return
        parent = self.graph.lookup(state.image_id) if state.image_id else None
        raw = commit.child_image_config(parent, state.config_with(), config, commit.EMPTY_LAYER_DIFF_ID,
                                        author=state.maintainer, docker_version=self.graph.docker_version)
        state.image_id = self.graph.create_image(raw, state.image_id or None)

    def commit_layer(self, state, name, container_config, container_id=""):
        """commitContainer / exportImage: the changes of writable layer `name` (a container's
        or a throwaway one) as the step's image."""
        state.image_id = commit.commit_layer(self.graph, name, state.image_id or None,
                                             state.config_with(), container_config,
                                             author=state.maintainer, container_id=container_id)

    def layer_step(self, state, container_config, change):
        """A step that changes files without running anything (COPY, ADD, WORKDIR): a
        writable layer on the current image, `change(root)` applied, committed."""
        name = "build-" + secrets.token_hex(16)
        self.graph.create_rw_layer(name, state.image_id or None)
        try:
            root = self.graph.mount_rw_layer(name)
            try:
                change(root)
            finally:
                self.graph.unmount_rw_layer(name)
            self.commit_layer(state, name, container_config)
        finally:
            self.graph.release_rw_layer(name)

    # -- RUN ------------------------------------------------------------------------------------

    def run(self, state, command):
        """dispatchRun: the command in a container of the current image; its exit code 0 or
        the build fails with it."""
        if command.flags_used:
            raise BuildError("the --%s option requires BuildKit. %s" % (command.flags_used[0], BUILDKIT_HINT))
        cmd = resolve_cmd_line(command, state)
        args_env = state.build_args.filter_allowed(state.run_config.get("Env"))
        saved = prepend_env_on_cmd(state.build_args, args_env, cmd) if args_env else cmd
        probe_config = state.config_with(Cmd=saved)
        probe_config.pop("ArgsEscaped", None)
        if saved:
            probe_config["Entrypoint"] = None
        if self.probe(state, probe_config):
            return
        if not state.image_id:
            raise BuildError("RUN needs a root filesystem to run in, and this stage has none "
                             "(FROM scratch with nothing added yet)")
        run_config = dict(probe_config, Cmd=cmd, Env=list(state.run_config.get("Env") or []) + args_env,
                          Healthcheck={"Test": ["NONE"]})
        if saved:
            run_config["Entrypoint"] = [""]
        container_id = self.create(run_config)
        code = self.backend.run_container(container_id, self._stdout_bytes, self._stderr_bytes,
                                          self.cancelled)
        if code != 0:
            raise BuildError("The command '%s' returned a non-zero code: %d" % (" ".join(cmd or []), code), code)
        self.commit_layer(state, container_id, probe_config, container_id)

    def create(self, run_config):
        """create: a container for the step, with the build's host options."""
        host_config = dict(self.options.resources, NetworkMode=self.options.network_mode,
                           LogConfig={"Type": "none", "Config": {}},
                           ExtraHosts=self.options.extra_hosts or None)
        container_id, warnings = self.backend.create_container(run_config, host_config)
        self.containers.append(container_id)
        for warning in warnings or []:
            self.out.stdout(" ---> [Warning] %s\n" % warning)
        self.out.stdout(" ---> Running in %s\n" % truncate_id(container_id))
        return container_id

    def _stdout_bytes(self, data):
        self.out.stdout(data.decode("utf-8", "replace"))

    def _stderr_bytes(self, data):
        self.out.stderr(data.decode("utf-8", "replace"))

    # -- COPY and ADD ----------------------------------------------------------------------------

    def copy_files(self, state, command, context, stage_index):
        """dispatchCopy / dispatchAdd: the sources' checksum decides the cache; the files
        go into a writable layer on the current image."""
        name = command.name.upper()
        if command.chmod:
            raise BuildError("the --chmod option requires BuildKit. %s" % BUILDKIT_HINT)
        source, from_layer = context, None
        if command.from_stage:
            source, from_layer = self._from_source(command.from_stage, stage_index)
        try:
            infos = self._copy_infos(command, source)
            if len(infos) > 1 and not command.dest.endswith("/"):
                raise BuildError("When using %s with more than one source file, the destination must "
                                 "be a directory and end with a /" % name)
            checksum = infos[0].checksum if len(infos) == 1 else \
                "multi:" + hashlib.sha256(",".join(info.checksum for info in infos).encode()).hexdigest()
            chown = "--chown=%s" % command.chown if command.chown else ""
            comment = "%s %s%s in %s " % (name, chown, checksum, command.dest)
            config = state.config_with(Cmd=state.shell() + ["#(nop) " + comment])
            if self.probe(state, config):
                return
            dest = normalize_dest(state.run_config.get("WorkingDir"), command.dest)
            preserve = bool(from_layer) and not command.chown

            def put_files(root):
                owner = None if preserve else chown_identity(root, command.chown)
                for info in infos:
                    copy_into(root, dest, info, owner, decompress=name == "ADD")

            self.layer_step(state, config, put_files)
        finally:
            if from_layer is not None:
                self.graph.unmount_rw_layer(from_layer)
                self.graph.release_rw_layer(from_layer)

    def _from_source(self, value, stage_index):
        """COPY --from: a finished stage (by name or index) or an image; its root,
        mounted on a throwaway writable layer, is the source."""
        image_id = self._stage_image(value, stage_index)
        if image_id is None:
            image_id = self.image(value).id
        name = "build-" + secrets.token_hex(16)
        self.graph.create_rw_layer(name, image_id or None)
        try:
            root = self.graph.mount_rw_layer(name)
        except BaseException:
            self.graph.release_rw_layer(name)
            raise
        return buildcontext.Source(root, in_context=False), name

    def _stage_image(self, value, stage_index):
        """stagesBuildResults.get: a stage's image ID by name or index, or None for an
        image name."""
        for index, (name, image_id) in self.built.items():
            if name and name == value.lower():
                return image_id
        if not re.match(r"^-?[0-9]+$", value):
            return None
        index = int(value)
        if index == stage_index:
            raise BuildError("invalid from flag value %s: refers to current build stage" % value)
        if index < 0 or index > stage_index or index not in self.built:
            raise BuildError("invalid from flag value %s: index out of bounds" % value)
        return self.built[index][1]

    def _copy_infos(self, command, source):
        infos = []
        for path in command.sources:
            if buildcontext.is_url(path):
                if command.name == "copy":
                    raise BuildError("%s failed: source can't be a URL for COPY" % command.name.upper())
                infos.append(self._download(path, command.dest))
                continue
            if source is None:
                raise BuildError("%s failed: missing build context" % command.name.upper())
            try:
                infos.extend(copy_infos(source, path))
            except InvalidParameter as err:
                raise BuildError("%s failed: %s" % (command.name.upper(), err)) from None
        if not infos:
            raise BuildError("%s failed: no source files were specified" % command.name.upper())
        return infos

    def _download(self, url, dest):
        """ADD <url>: downloaded (progress shown), never unpacked."""
        source, name = buildcontext.download(url, self.tmp_dir, self.out.progress)
        self.sources.append(source)
        self.out.stdout("\n")
        if not name:
            if dest.endswith("/"):
                raise BuildError("cannot determine filename for source %s" % url)
            name = buildcontext.UNNAMED_FILE
        return CopyInfo(source, name, name, False, "file:" + source.hash(name), no_decompress=True)


def expand_command(command, env, escape):
    """SupportsSingleWordExpansion: the words of ENV, LABEL, ARG, COPY, ADD, WORKDIR, USER,
    VOLUME and STOPSIGNAL go through the shell lexer against `env` (EXPOSE does its own)."""
    lex = dockerfile.ShellLex(escape)

    def word(text):
        try:
            return lex.process_word(text, env)
        except dockerfile.DockerfileError as err:
            raise InvalidParameter(str(err)) from None

    name = command.name
    if name in ("env", "label") and not getattr(command, "no_expand", False):
        return command.copy(pairs=[(word(key), word(value)) for key, value in command.pairs])
    if name == "arg":
        return command.copy(args=[(word(key), None if value is None else word(value))
                                  for key, value in command.args])
    if name in ("copy", "add"):
        return command.copy(chown=word(command.chown), sources=[word(s) for s in command.sources],
                            dest=word(command.dest))
    if name in ("workdir", "user", "stopsignal"):
        field = {"workdir": "path", "user": "user", "stopsignal": "signal"}[name]
        return command.copy(**{field: word(getattr(command, field))})
    if name == "volume":
        return command.copy(volumes=[word(volume) for volume in command.volumes])
    return command


def copy_infos(source, path):
    """calcCopyInfo: what one source path names -- a file, a directory, or with wildcards
    every match (filepath.Match against each path in the source, directories included)."""
    path = path.lstrip("/")
    path = path[2:] if path.startswith("./") else path
    if contains_wildcards(path):
        return [info for rel in source.walk() if glob_match(path, rel)
                for info in copy_infos_exact(source, rel)]
    return copy_infos_exact(source, path)


def copy_infos_exact(source, path):
    rel, st = source.stat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    checksum = source.dir_hash(rel) if is_dir else "file:" + source.hash(rel)
    return [CopyInfo(source, path, rel, is_dir, checksum)]


def contains_wildcards(path):
    index = 0
    while index < len(path):
        if path[index] == "\\":
            index += 2
            continue
        if path[index] in "*?[":
            return True
        index += 1
    return False


def copy_into(root, dest, info, owner, decompress):
    """performCopyForInfo: a directory's contents go into `dest`; an archive ADDs unpacked;
    a file lands at `dest`, or inside it when `dest` ends with / or is a directory."""
    src_root = info.source.root
    if info.is_dir:
        existed = archive.is_directory(root, dest)
        directory = archive.mkdir_all(root, dest)
        archive.copy_path(src_root, info.rel, directory, ".", owner)
        if owner and not existed:
            os.chown(directory, *owner)
        return
    path = info.source.full_path(info.rel)
    if decompress and not info.no_decompress and archive.is_archive(path):
        with open(path, "rb") as stream:
            archive.untar(archive.mkdir_all(root, dest), stream)
        return
    target = dest
    if dest.endswith("/") or archive.is_directory(root, dest):
        target = posixpath.join(dest, posixpath.basename(info.path.rstrip("/")))
    directory = archive.mkdir_all(root, posixpath.dirname(target) or "/", owner)
    archive.copy_path(src_root, info.rel, directory, posixpath.basename(target), owner)


def chown_identity(root, chown):
    """parseChownFlag: --chown=user[:group], names looked up in the image's own
    /etc/passwd and /etc/group (never the host's); (0, 0) without --chown."""
    if not chown:
        return (0, 0)
    parts = chown.split(":")
    if len(parts) > 2:
        raise BuildError("unable to convert uid/gid chown string to host mapping: invalid chown "
                         "string format: " + chown)
    user, group = parts[0], parts[-1]
    try:
        return (_lookup_id(root, "/etc/passwd", user, "user"), _lookup_id(root, "/etc/group", group, "group"))
    except BuildError as err:
        raise BuildError("unable to convert uid/gid chown string to host mapping: %s" % err) from None


def _lookup_id(root, path, name, kind):
    if re.match(r"^[0-9]+$", name):
        return int(name)
    try:
        text = archive.read_file(root, path).decode("utf-8", "replace")
    except OSError as err:
        raise BuildError("can't find %s for %s %s: open %s: %s" % (
            "uid" if kind == "user" else "gid", kind, name, path, err.strerror)) from None
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    raise BuildError("can't find %s for %s %s: no such %s: %s" % (
        "uid" if kind == "user" else "gid", kind, name, kind, name))


def trigger_command(trigger):
    """An ONBUILD trigger, parsed when it fires: one instruction, never FROM."""
    result = dockerfile.parse(trigger)
    if len(result.nodes) != 1:
        raise BuildError("onbuild trigger should be a single expression")
    return dockerfile.parse_command(result.nodes[0])


def check_platform(platform):
    """--platform / FROM --platform: only linux on this machine's architecture can run."""
    if not platform:
        return
    parts = platform.lower().split("/")
    if parts[0] != "linux":
        raise InvalidParameter('"%s": unsupported operating system; pydockerd builds linux images'
                               % platform)
    if len(parts) > 1 and parts[1] != go_arch()[0]:
        raise InvalidParameter("platform %s cannot run on this %s machine: pydockerd does not "
                               "emulate other architectures" % (platform, go_arch()[0]))


def check_image_platform(image, name, platform):
    if platform and len(platform.split("/")) > 1:
        actual = "%s/%s" % (image.os, image.config.get("architecture", ""))
        if actual != "/".join(platform.lower().split("/")[:2]):
            raise NotFound("image with reference %s was found but does not match the specified "
                           "platform: wanted %s, actual: %s" % (name, platform, actual))


def needed_stages(stages, target, meta_env):
    """The indexes of the stages the target needs, in order: itself and, transitively, the
    stages its FROM or a COPY --from names (by name or index)."""
    lex = dockerfile.ShellLex()
    needed, pending = {target}, [target]
    while pending:
        index = pending.pop()
        references = [lex.process_word(stages[index].base, meta_env)]
        references += [command.from_stage for command in stages[index].commands
                       if getattr(command, "from_stage", "")]
        for reference in references:
            for earlier in range(index):
                if earlier not in needed and (stages[earlier].name == reference.lower() or reference == str(earlier)):
                    needed.add(earlier)
                    pending.append(earlier)
    return sorted(needed)


class Steps(object):
    """The step counter: "Step N/M : <instruction>" and its newline, two messages."""

    def __init__(self, out, total):
        self.out = out
        self.total = total
        self.current = 0

    def announce(self, command):
        self.current += 1
        self.out.stdout("Step %d/%d : %s" % (self.current, self.total, command))
        self.out.stdout("\n")


# ---------------------------------------------------------------------------------------------
# The dispatchers of the config-only instructions (dispatchers.go)
# ---------------------------------------------------------------------------------------------

def dispatch_env(builder, state, command, *_):
    env = list(state.run_config.get("Env") or [])
    for key, value in command.pairs:
        entry = "%s=%s" % (key, value)
        names = [item.split("=", 1)[0] for item in env]
        if key in names:
            env[names.index(key)] = entry
        else:
            env.append(entry)
    state.run_config["Env"] = env
    _commit(builder, state, "ENV " + " ".join("%s=%s" % pair for pair in command.pairs))


def dispatch_maintainer(builder, state, command, *_):
    state.maintainer = command.maintainer
    _commit(builder, state, "MAINTAINER " + command.maintainer)


def dispatch_label(builder, state, command, *_):
    labels = dict(state.run_config.get("Labels") or {})
    labels.update(command.pairs)
    state.run_config["Labels"] = labels
    _commit(builder, state, "LABEL " + " ".join("%s=%s" % pair for pair in command.pairs))


def dispatch_onbuild(builder, state, command, *_):
    state.run_config["OnBuild"] = list(state.run_config.get("OnBuild") or []) + [command.expression]
    _commit(builder, state, "ONBUILD " + command.expression)


def dispatch_workdir(builder, state, command, *_):
    workdir = normalize_workdir(state.run_config.get("WorkingDir"), command.path)
    state.run_config["WorkingDir"] = workdir
    if builder is None:  # commit --change: the config is all there is
        return
    config = state.config_with(Cmd=state.shell() + ["#(nop) WORKDIR " + workdir])
    if builder.probe(state, config):
        return

    def make_workdir(root):
        try:
            archive.mkdir_all(root, workdir)
        except NotADirectoryError:
            raise BuildError("Cannot mkdir: %s is not a directory" % workdir) from None

    builder.layer_step(state, config, make_workdir)


def dispatch_run(builder, state, command, *_):
    builder.run(state, command)


def dispatch_copy(builder, state, command, context, stage_index):
    builder.copy_files(state, command, context, stage_index)


def dispatch_cmd(builder, state, command, *_):
    cmd = resolve_cmd_line(command, state)
    state.run_config["Cmd"] = cmd
    state.run_config.pop("ArgsEscaped", None)
    if command.command:
        state.cmd_set = True
    _commit(builder, state, "CMD " + go_list(cmd or [], quote=True))


def dispatch_healthcheck(builder, state, command, *_):
    old = (state.run_config.get("Healthcheck") or {}).get("Test") or []
    if builder is not None and old and old[0] != "NONE":
        builder.out.stdout("Note: overriding previous HEALTHCHECK: %s\n" % go_list(old))
    state.run_config["Healthcheck"] = dict(command.health)
    _commit(builder, state, "HEALTHCHECK " + health_text(command.health))


def dispatch_entrypoint(builder, state, command, *_):
    entrypoint = resolve_cmd_line(command, state)
    state.run_config["Entrypoint"] = entrypoint
    state.run_config.pop("ArgsEscaped", None)
    if not state.cmd_set:
        state.run_config["Cmd"] = None
    _commit(builder, state, "ENTRYPOINT " + go_list(entrypoint or [], quote=True))


_PORT = re.compile(r"^(?:(?:[0-9.]*|\[[0-9a-fA-F:.]*\]):)?(?:[0-9]*-?[0-9]*:)?([0-9]+)(?:-([0-9]+))?(?:/([a-zA-Z]+))?$")


def parse_port_specs(ports):
    """nat.ParsePortSpecs: "80", "80/udp", "8000-8002", "[ip:]host:container[/proto]"."""
    exposed = {}
    for spec in ports:
        match = _PORT.match(spec)
        if not match:
            raise InvalidParameter("Invalid containerPort: %s" % spec)
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        proto = (match.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidParameter("invalid proto: %s" % match.group(3))
        if last < first or last > 65535:
            raise InvalidParameter("Invalid containerPort: %s" % spec)
        exposed.update(("%d/%s" % (port, proto), {}) for port in range(first, last + 1))
    return exposed


def dispatch_expose(builder, state, command, *_):
    lex = dockerfile.ShellLex(builder.escape if builder else dockerfile.DEFAULT_ESCAPE)
    ports = [word for port in command.ports for word in lex.process_words(port, state.env())]
    exposed = dict(state.run_config.get("ExposedPorts") or {})
    exposed.update(parse_port_specs(ports))
    state.run_config["ExposedPorts"] = exposed
    _commit(builder, state, "EXPOSE " + " ".join(ports))


def dispatch_user(builder, state, command, *_):
    state.run_config["User"] = command.user
    _commit(builder, state, "USER " + command.user)


def dispatch_volume(builder, state, command, *_):
    volumes = dict(state.run_config.get("Volumes") or {})
    for volume in command.volumes:
        if not volume:
            raise InvalidParameter("VOLUME specified can not be an empty string")
        volumes[volume] = {}
    state.run_config["Volumes"] = volumes
    _commit(builder, state, "VOLUME " + go_list(command.volumes))


def dispatch_stopsignal(builder, state, command, *_):
    if not _valid_signal(command.signal):
        raise InvalidParameter("Invalid signal: %s" % command.signal)
    state.run_config["StopSignal"] = command.signal
    _commit(builder, state, "STOPSIGNAL " + command.signal)


def _valid_signal(text):
    """signal.ParseSignal: a positive number, or a name with or without SIG."""
    if text.isdigit():
        return int(text) > 0
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    return name in signal.Signals.__members__ or bool(re.match(r"^SIGRTM(?:IN|AX)(?:[+-][0-9]+)?$", name))


def dispatch_arg(builder, state, command, *_):
    text = []
    for name, default in command.args:
        text.append(name if default is None else "%s=%s" % (name, default))
        state.build_args.add(name, default)
    _commit(builder, state, "ARG " + " ".join(text))


def dispatch_shell(builder, state, command, *_):
    state.run_config["Shell"] = list(command.shell)
    _commit(builder, state, "SHELL " + go_list(command.shell))


def _commit(builder, state, comment):
    """A config-only step: committed in a build, nothing to do for commit --change."""
    if builder is not None:
        builder.commit(state, comment)


DISPATCHERS = {
    "env": dispatch_env, "maintainer": dispatch_maintainer, "label": dispatch_label,
    "add": dispatch_copy, "copy": dispatch_copy, "onbuild": dispatch_onbuild,
    "workdir": dispatch_workdir, "run": dispatch_run, "cmd": dispatch_cmd,
    "healthcheck": dispatch_healthcheck, "entrypoint": dispatch_entrypoint,
    "expose": dispatch_expose, "user": dispatch_user, "volume": dispatch_volume,
    "stopsignal": dispatch_stopsignal, "arg": dispatch_arg, "shell": dispatch_shell,
}


# ---------------------------------------------------------------------------------------------
# BuildFromConfig: `docker commit --change` and `docker import --change`
# ---------------------------------------------------------------------------------------------

def build_from_config(config, changes):
    """BuildFromConfig: apply Dockerfile lines (`changes`) that only edit a config to a copy
    of `config` (a container.Config dict) and return it. Only CMD, ENTRYPOINT, HEALTHCHECK,
    ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME and WORKDIR are accepted; anything else is
    refused, before any change is made, with dockerd's message."""
    config = copy.deepcopy(config)
    lines = [line for line in changes if line.strip()]
    if not lines:
        return config
    try:
        result = dockerfile.parse("\n".join(lines))
    except dockerfile.DockerfileError as err:
        raise InvalidParameter(str(err)) from None
    for node in result.nodes:
        if node.value not in COMMIT_CHANGES:
            raise InvalidParameter("%s is not a valid change command" % node.value)
    commands = [dockerfile.parse_command(node) for node in result.nodes]
    state = State(BuildArgs({}))
    state.run_config = config
    for command in commands:
        command = expand_command(command, state.env(), result.escape)
        DISPATCHERS[command.name](None, state, command, None, 0)
    return state.run_config
