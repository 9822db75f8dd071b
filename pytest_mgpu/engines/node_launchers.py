"""How a non-head node is started: each launcher only turns a node's command into the one run here.

- `local`: the command itself, on this machine (CI's two "nodes" on one box).
- `ssh`: `ssh -tt -o BatchMode=yes HOST 'cd DIR && exec env K=V ... CMD'`; the forced tty makes
  sshd hang up the remote command when the local ssh (the group pytest kills) goes away.
- `slurm`: `srun --nodes=1 --ntasks=1 --nodelist=HOST --export=ALL CMD` inside an allocation; the
  environment travels through srun's own export (values such as "0,1|2,3" break --export=K=V).
- a template such as `ssh {host}` or `kubectl exec {host} -- sh -c {cmd}`: `{host}` is the node,
  `{cmd}` the whole remote command as one shell word; without `{cmd}` the command is appended
  as `env K=V ... CMD`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

LOCAL, SSH, SLURM = "local", "ssh", "slurm"
BUILTIN = (LOCAL, SSH, SLURM)


def parse_launcher(value: str) -> str:
    """local, ssh, slurm, or a template naming {host}; ValueError says what was expected."""
    value = value.strip()
    if value in BUILTIN:
        return value
    if "{host}" not in value:
        raise ValueError("expected local, ssh, slurm, or a command template containing {host} "
                         f"(e.g. 'ssh {{host}}'); got {value!r}")
    try:
        shlex.split(value)
        value.replace("{host}", "h").replace("{cmd}", "c").format()
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"the template {value!r} does not parse ({exc}); only {{host}} and {{cmd}} may be "
                         "substituted") from None
    return value


def parse_hosts(value: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in value.split(",") if h.strip())
    if not hosts:
        raise ValueError("expected a comma-separated list of hosts, head first, e.g. node0,node1")
    return hosts


def remote_command(argv: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> str:
    """One shell string that runs `argv` with `env` (and in `cwd`) on another host."""
    cmd = shlex.join(["env", *(f"{k}={v}" for k, v in sorted(env.items())), *argv])
    return f"cd {shlex.quote(cwd)} && exec {cmd}" if cwd else f"exec {cmd}"


def wrap_for_node(launcher: str, host: str, argv: Sequence[str], env: Mapping[str, str], *,
                  cwd: str | None = None) -> tuple[tuple[str, ...], dict[str, str]]:
    """(argv to run here, env to run it with) that start `argv` with `env` on `host` through `launcher`."""
    if launcher == LOCAL:
        return tuple(argv), dict(env)
    if launcher == SSH:
        return ("ssh", "-tt", "-o", "BatchMode=yes", host, remote_command(argv, env, cwd)), {}
    if launcher == SLURM:
        head = ["srun", "--nodes=1", "--ntasks=1", f"--nodelist={host}", "--export=ALL", "--kill-on-bad-exit=1"]
        if cwd:
            head.append(f"--chdir={cwd}")
        return (*head, *argv), dict(env)
    tokens = shlex.split(launcher)
    if any("{cmd}" in t for t in tokens):
        cmd = remote_command(argv, env, cwd)
        return tuple(t.replace("{host}", host).replace("{cmd}", cmd) for t in tokens), {}
    tail = ["env", *(f"{k}={v}" for k, v in sorted(env.items())), *argv]
    return (*(t.replace("{host}", host) for t in tokens), *tail), {}
