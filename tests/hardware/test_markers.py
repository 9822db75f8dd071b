"""The mgpu markers as users meet them: pytest in a subprocess, on recorded topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

RTX = "rtx4090-2x-sys-2numa.topo-m.txt"
H100 = "dgx-h100-8x-nv18-2numa.topo-m.txt"
RTX_SYS = "found 2x NVIDIA GeForce RTX 4090 linked by SYS"


def run(pytester: pytest.Pytester, topologies_dir: Path, name: str, *args: str) -> pytest.RunResult:
    # `--opt=PATH`, one argument: pytest takes a bare path argument into account when it picks the rootdir
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rsxXw",
                                         f"--mgpu-topology-file={topologies_dir / name}", *args)


def test_skip_with_reason(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.mgpu_topology(min_link="NVLINK")
        def test_needs_nvlink():
            pass

        @pytest.mark.mgpu_gpus(4)
        def test_needs_four():
            pass

        @pytest.mark.mgpu_gpus(2)
        @pytest.mark.mgpu_topology(min_link="PHB", same_numa=True)
        def test_needs_one_socket():
            pass
    """)
    result = run(pytester, topologies_dir, RTX)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines([
        f"SKIPPED [[]1[]] test_skip_with_reason.py:3: requires 2 devices linked by NVLINK; {RTX_SYS}",
        f"SKIPPED [[]1[]] test_skip_with_reason.py:7: requires 4 devices; {RTX_SYS}",
        "SKIPPED [[]1[]] test_skip_with_reason.py:11: requires 2 devices linked by PHB on one NUMA node; "
        f"{RTX_SYS} across NUMA nodes 0, 1",
    ])


def test_xfail(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.mgpu_topology(min_link="NVLINK", on_mismatch="xfail")
        def test_tp2_beats_tp1():
            assert False, "no NVLink, no speedup"

        @pytest.mark.mgpu_topology(min_link="NVLINK", on_mismatch="xfail")
        def test_passes_anyway():
            pass
    """)
    result = run(pytester, topologies_dir, RTX)
    result.assert_outcomes(xfailed=1, xpassed=1)
    result.stdout.fnmatch_lines([
        f"XFAIL test_xfail.py::test_tp2_beats_tp1 - requires 2 devices linked by NVLINK; {RTX_SYS}",
    ])


def test_warn_runs_the_test_and_records_the_warning(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makeconftest("""
        from pytest_mgpu.session import get_session
        from pytest_mgpu.hardware.markers import APPROVED_DEVICES_KEY

        def pytest_runtest_call(item):
            print("APPROVED", item.stash.get(APPROVED_DEVICES_KEY, None))

        def pytest_unconfigure(config):
            print("SESSION-WARNINGS", get_session(config).warnings)
    """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.mgpu_topology(min_link="NVLINK", on_mismatch="warn")
        def test_runs():
            pass
    """)
    result = run(pytester, topologies_dir, RTX, "-s")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*APPROVED (0, 1)*",
        f"*MgpuTopologyWarning: requires 2 devices linked by NVLINK; {RTX_SYS}",
        f"SESSION-WARNINGS ['test_warn_runs_the_test_and_records_the_warning.py::test_runs: "
        f"requires 2 devices linked by NVLINK; {RTX_SYS}']",
    ])


def test_pass_and_the_approved_devices(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makepyfile("""
        import pytest
        from pytest_mgpu.hardware.markers import APPROVED_DEVICES_KEY

        @pytest.mark.mgpu_topology(min_link="NVLINK")
        def test_pair(request):
            assert request.node.stash[APPROVED_DEVICES_KEY] == (0, 1)

        @pytest.mark.mgpu_gpus(4)
        @pytest.mark.mgpu_topology(min_link="NVLINK", same_numa=True)
        def test_one_socket(request):
            assert request.node.stash[APPROVED_DEVICES_KEY] == (0, 1, 2, 3)

        @pytest.mark.mgpu_gpus(6)
        @pytest.mark.mgpu_topology(same_numa=True)
        def test_too_many_for_one_socket():
            pass

        @pytest.mark.mgpu_gpus(8)
        class TestWholeBox:
            def test_all(self, request):
                assert request.node.stash[APPROVED_DEVICES_KEY] == tuple(range(8))

            @pytest.mark.mgpu_gpus(1)
            def test_closest_marker_wins(self, request):
                assert request.node.stash[APPROVED_DEVICES_KEY] == (0,)
    """)
    result = run(pytester, topologies_dir, H100)
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines([
        "SKIPPED * requires 6 devices linked by NVLINK on one NUMA node; "
        "found 6x NVIDIA H100 80GB HBM3 linked by NVLINK across NUMA nodes 0, 1",
    ])


def test_bad_marker_arguments_are_a_usage_error(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.mgpu_topology(min_link="NVLNK")
        def test_typo():
            pass

        @pytest.mark.mgpu_gpus(0)
        def test_zero():
            pass

        @pytest.mark.mgpu_topology(on_mismatch="explode", speed="fast")
        def test_unknown_kwarg():
            pass

        @pytest.mark.mgpu_topology(same_numa="yes")
        def test_not_bool():
            pass
    """)
    result = run(pytester, topologies_dir, RTX)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: pytest-mgpu: bad marker arguments:",
        "  test_bad_marker_arguments_are_a_usage_error.py::test_typo: @pytest.mark.mgpu_topology(min_link='NVLNK'): "
        "min_link='NVLNK' is not a link class; expected one of NVLINK > PIX > PXB > PHB > NODE > SYS",
        "  *::test_zero: @pytest.mark.mgpu_gpus(0): n=0 is not a number of devices; expected an integer >= 1",
        "  *::test_unknown_kwarg: @pytest.mark.mgpu_topology(on_mismatch='explode', speed='fast'): "
        "unknown argument speed; expected min_link, same_numa, on_mismatch",
        "  *::test_not_bool: *same_numa='yes'; expected True or False",
    ])
    result.stdout.no_fnmatch_line("*passed*")


def test_markers_are_registered_and_strict_markers_accepts_them(pytester: pytest.Pytester,
                                                                topologies_dir: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.mgpu_gpus(1)
        def test_one():
            pass
    """)
    result = run(pytester, topologies_dir, RTX, "--strict-markers")
    result.assert_outcomes(passed=1)
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.mgpu_gpus(n): *", "@pytest.mark.mgpu_topology(min_link='NVLINK'*"])


def test_report_header(pytester: pytest.Pytester, topologies_dir: Path) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, topologies_dir, H100, "--mgpu-lock-dir=/tmp/some-locks")
    result.stdout.fnmatch_lines([
        f"mgpu: cuda devices from *{H100}: 8x NVIDIA H100 80GB HBM3 linked by NVLINK",
        "mgpu: links NV18 x28; NUMA nodes 0, 1",
        "mgpu: fingerprint 8xH100-80GB-NV18-*; lock dir /tmp/some-locks",
    ])


def test_cuda_without_gpus_is_a_usage_error(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    (tmp_path / "pynvml.py").write_text("raise ImportError('no nvidia-ml-py here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--mgpu-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-mgpu: --mgpu-device cuda needs at least one NVIDIA GPU, "
                                 "but none was found (nvidia-ml-py is not installed*"])
