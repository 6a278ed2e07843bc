"""`docker top`: a container's processes as the host's ps shows them (Docker's daemon/top_unix.go).

    GET /containers/{name}/top?ps_args=...  ->  {"Titles": [...], "Processes": [[...], ...]}

The daemon runs the host's `ps` (never a binary of the image: the container's could lie), with
the client's ps_args split on spaces ("-ef" when none are given), and keeps the rows of the
container's processes, the pids of its cgroup. A row whose PID is "-" is a thread of the
process above it (`ps m`, `ps -T`...), kept when that process is. The Titles are the header
line's words; each kept row is cut into as many fields as there are Titles, the overhanging
ones (a command's arguments) joined with spaces into the last.

ps exiting non-zero is the daemon's error: "ps: " and the first line ps wrote to stderr (or its
exit status). A header without PID (`ps -o user,cmd`) cannot be filtered: "Couldn't find PID
field in ps output".
"""
import subprocess

from drivers import errdefs


def container_top(pids, ps_args):
    """ContainerTop once the container's pids are known: the ps listing of those `pids`
    (ps run with `ps_args`, "-ef" by default), as the API's {"Titles", "Processes"}."""
    args = (ps_args or "-ef").split(" ")
    # `-q <pids>` lets ps skip the others; some options (f) refuse it, so retry without.
    for command in (["ps"] + args + ["-q", ",".join(map(str, pids))], ["ps"] + args):
        ps = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
        if ps.returncode == 0:
            return parse_ps_output(ps.stdout.decode("utf-8", "replace"), set(pids))
    first_line = ps.stderr.decode("utf-8", "replace").split("\n")[0]
    raise errdefs.System("ps: %s" % (first_line or "exit status %d" % ps.returncode))


def parse_ps_output(output, pids):
    """parsePSOutput: Titles from the header line; each kept row has as many fields as there
    are titles, the overhanging ones (a command's arguments) joined into the last."""
    lines = output.split("\n")
    titles = lines[0].split()
    if "PID" not in titles:
        raise errdefs.System("Couldn't find PID field in ps output")
    pid_index = titles.index("PID")
    processes, in_container = [], False
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        if fields[pid_index] == "-":  # a thread of the process above
            if in_container:
                processes.append(fit_fields(fields, len(titles)))
            continue
        try:
            in_container = int(fields[pid_index]) in pids
        except ValueError:
            raise errdefs.System("Unexpected pid '%s'" % fields[pid_index]) from None
        if in_container:
            processes.append(fit_fields(fields, len(titles)))
    return {"Titles": titles, "Processes": processes}


def fit_fields(fields, count):
    """A row's fields cut to `count`, the rest joined with spaces into the last one."""
    return fields[:count - 1] + [" ".join(fields[count - 1:])]
