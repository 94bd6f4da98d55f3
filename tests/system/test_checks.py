#!/usr/bin/env python3
"""Unit tests of the tier's pure checks (no VM): python3 tests/system/test_checks.py"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import harness  # noqa: E402
import scenarios  # noqa: E402

VIP_ADD = "addr 2: eth0    inet 198.18.88.100/24 brd 198.18.88.255 scope global secondary eth0"
VIP_DEL = "addr Deleted 2: eth0    inet 198.18.88.100/24 brd 198.18.88.255 scope global secondary eth0"


class Log:
    """Stands in for a Cluster's event log only."""

    def __init__(self, lines, n=2):
        self.evs = [harness.Event(float(i), n, t) for i, (n, t) in enumerate(lines)]
        self.nodes = dict.fromkeys(range(1, n + 1))

    def events(self, since=0):
        return self.evs[since:]


class Replay(unittest.TestCase):
    def tearDown(self):
        scenarios.IGNORE.clear()

    def test_handover_in_order_passes(self):
        scenarios.no_two_masters(Log([(1, VIP_ADD), (1, "unit start"), (1, "unit stop"),
                                      (1, VIP_DEL), (2, VIP_ADD), (2, "unit start")]))

    def test_vip_on_both_fails(self):
        with self.assertRaisesRegex(scenarios.Fail, "vip on both"):
            scenarios.no_two_masters(Log([(1, VIP_ADD), (2, VIP_ADD)]))

    def test_unit_on_both_fails(self):
        with self.assertRaisesRegex(scenarios.Fail, "web on both"):
            scenarios.no_two_masters(Log([(2, "unit start"), (1, "unit start"), (2, "unit stop")]))

    def test_other_addresses_ignored(self):
        scenarios.no_two_masters(Log([(1, "addr 2: eth0    inet 198.18.88.1/24 scope global eth0"),
                                      (2, "addr 2: eth0    inet 198.18.88.2/24 scope global eth0")]))

    def test_before_since_not_reported_but_replayed(self):
        log = Log([(1, VIP_ADD), (2, VIP_ADD), (2, VIP_DEL), (1, "unit start")])
        scenarios.no_two_masters(log, since=2)
        with self.assertRaises(scenarios.Fail):
            scenarios.no_two_masters(Log([(1, VIP_ADD), (2, "x"), (2, VIP_ADD)]), since=2)

    def test_third_node_counts(self):
        with self.assertRaisesRegex(scenarios.Fail, "vip on both"):
            scenarios.no_two_masters(Log([(3, VIP_ADD), (1, VIP_ADD)], n=3))

    def test_powered_off_holds_nothing(self):
        # fenced with its VIP up: the new master's VIP after the power off is fine
        scenarios.no_two_masters(Log([(1, VIP_ADD), (1, "power off (fenced by node2)"),
                                      (2, VIP_ADD)], n=3))
        with self.assertRaisesRegex(scenarios.Fail, "vip on both"):
            scenarios.no_two_masters(Log([(1, VIP_ADD), (2, VIP_ADD),
                                          (1, "power off (fenced by node2)")], n=3))

    def test_ignored_window(self):
        log = Log([(1, "unit start"), (2, "unit start"), (2, "unit stop")])
        scenarios.IGNORE.append((2, "web", 1, 3))
        scenarios.no_two_masters(log)


class Rounds(unittest.TestCase):
    def test_handover_within_a_round_is_not_two(self):
        self.assertIsNone(scenarios.overlap_round([{1}, {1, 2}, {2}, {2}]))

    def test_master_on_both_sides_of_a_round(self):
        self.assertEqual(scenarios.overlap_round([{1}, {1, 2}, {1}]), 1)

    def test_single_masters(self):
        self.assertIsNone(scenarios.overlap_round([{1}, {1}, set(), {2}, {2}]))


class SnapParse(unittest.TestCase):
    def test_master(self):
        s = scenarios.Snap(1, '{"node":"node1","resources":[{"name":"web","state":"master"}]}\n@@\n'
                              '2: eth0    inet 198.18.88.100/24 scope global secondary eth0\n@@\n'
                              'active\nactive\n')
        self.assertTrue(s.master and s.vip and s.web)
        self.assertEqual(s.daemon, "active")

    def test_no_daemon_no_address(self):
        s = scenarios.Snap(2, "{}\n@@\n@@\ninactive\ninactive\n")
        self.assertFalse(s.master or s.vip or s.web)
        self.assertEqual(s.daemon, "inactive")


if __name__ == "__main__":
    unittest.main()
