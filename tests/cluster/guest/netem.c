/* netem.c - delay and loss on a guest's link, for the nemesis (issue 21).
 *
 *   netem IFACE DELAY_MS JITTER_MS LOSS_PERCENT   root qdisc: netem (replaces any)
 *   netem IFACE off                               root qdisc deleted
 *
 * busybox's tc cannot add a netem qdisc, and the host kernel has no
 * sch_netem, so the guest does it on its own egress: one RTM_NEWQDISC (or
 * RTM_DELQDISC) over rtnetlink, acknowledged. Latency and jitter are in
 * psched ticks (PSCHED_TICKS2NS(1) ns each: /proc/net/psched's second
 * field, 64 on every kernel since 2.6.x); loss is a fraction of
 * UINT32_MAX. Exit 0 when the kernel acknowledged, else 1 with why.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct {
	struct nlmsghdr n;
	struct tcmsg t;
	char buf[256];
} req;

static void attr(int type, const void *data, int len)
{
	struct rtattr *a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len));
	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

static double ns_per_tick(void)
{
	unsigned t2us, us2t;
	FILE *f = fopen("/proc/net/psched", "r");
	double r = 64;
	if (f) {
		if (fscanf(f, "%08x%08x", &t2us, &us2t) == 2 && us2t > 0)
			r = us2t;
		fclose(f);
	}
	return r;
}

int main(int argc, char **argv)
{
	int off = argc == 3 && strcmp(argv[2], "off") == 0;
	if (!off && argc != 5) {
		fprintf(stderr, "usage: netem IFACE DELAY_MS JITTER_MS LOSS_PERCENT | netem IFACE off\n");
		return 2;
	}
	unsigned idx = if_nametoindex(argv[1]);
	if (!idx) {
		fprintf(stderr, "netem: no interface %s\n", argv[1]);
		return 1;
	}
	req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
	req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.t.tcm_family = AF_UNSPEC;
	req.t.tcm_ifindex = idx;
	req.t.tcm_parent = TC_H_ROOT;
	if (off) {
		req.n.nlmsg_type = RTM_DELQDISC;
	} else {
		double tick = ns_per_tick();
		struct tc_netem_qopt q = {0};
		q.limit = 1000;
		q.latency = (uint32_t)(atof(argv[2]) * 1e6 / tick);
		q.jitter = (uint32_t)(atof(argv[3]) * 1e6 / tick);
		q.loss = (uint32_t)(atof(argv[4]) / 100.0 * UINT32_MAX);
		req.n.nlmsg_type = RTM_NEWQDISC;
		req.n.nlmsg_flags |= NLM_F_CREATE | NLM_F_REPLACE;
		req.t.tcm_handle = 0x10000; /* 1: */
		attr(TCA_KIND, "netem", 6);
		attr(TCA_OPTIONS, &q, sizeof(q));
	}
	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0 || send(s, &req, req.n.nlmsg_len, 0) < 0) {
		perror("netem: netlink");
		return 1;
	}
	char buf[1024];
	ssize_t n = recv(s, buf, sizeof(buf), 0);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
		perror("netem: no answer");
		return 1;
	}
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct nlmsgerr *e = NLMSG_DATA(h);
	if (h->nlmsg_type != NLMSG_ERROR || e->error != 0) {
		/* Deleting a root qdisc that is the default: nothing to undo. */
		if (off && e->error == -ENOENT)
			return 0;
		fprintf(stderr, "netem: %s\n", strerror(-e->error));
		return 1;
	}
	return 0;
}
