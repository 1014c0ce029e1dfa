"""bench/unit_cgroup.py (issue 25): the daemon the microscope section starts gets the shipped
unit's CPU weight in a cgroup of its own where the machine lets us, says so where it does not,
and leaves no group behind."""

from __future__ import annotations

import subprocess

from unit_cgroup import SLICE_FILE, unit_weights, weighted_group


def test_the_weights_are_read_from_the_unit_file(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Service]\nNice=5\nCPUWeight=30\nIOWeight=40\n")
    assert unit_weights(unit) == {"CPUWeight": 30, "IOWeight": 40}
    assert unit_weights(SLICE_FILE) == {"CPUWeight": 20, "IOWeight": 20}  # the shipped slice's


def test_a_process_started_through_the_wrapper_runs_in_the_weighted_group():
    with weighted_group(SLICE_FILE, "mq-deadline") as group:
        inside = subprocess.run(
            [*group.wrapper(), "cat", "/proc/self/cgroup"], capture_output=True, text=True
        )
        assert inside.returncode == 0, inside.stderr
        if group.path is None:  # not root, or no cpu controller: said, and run as before
            assert group.wrapper() == []
            assert group.not_applied[0].startswith("CPUWeight=20: ")
        else:
            assert f"{group.path.name}\n" in inside.stdout
            knob = "cpu.shares" if (group.path / "cpu.shares").exists() else "cpu.weight"
            assert (group.path / knob).read_text().strip() in ("204", "20")
            assert group.applied[0].startswith("CPUWeight=20 (cgroup v")
        assert any(
            w.startswith("IOWeight=20: the disk's scheduler (mq-deadline)")
            for w in group.not_applied
        )
    assert group.path is None or not group.path.exists()  # removed on leaving


def test_without_a_cpu_controller_it_says_why_and_changes_nothing(tmp_path):
    with weighted_group(SLICE_FILE, "bfq", root=tmp_path) as group:
        assert group.path is None and group.wrapper() == []
    assert group.applied == []
    assert group.describe() == (
        f"weights applied: none; weights not applied: CPUWeight=20: no cpu controller under"
        f" {tmp_path} (neither v2 nor v1); IOWeight=20: {tmp_path / 'blkio'} has no weight"
        " file (throttles only)"
    )
