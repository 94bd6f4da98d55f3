/*
 * dlmtry - EX trylock driver for ocfs2_dlmfs lock files (guest side of the
 * dlm-electd cluster tests).
 *
 * usage: dlmtry [-i INTERVAL_MS] [-t TIMEOUT_MS] [-H] [-u] [-r] [-w TEXT]
 *               [-E EVENT] PATH
 *
 * Trylocks PATH with open(O_RDWR|O_CREAT|O_NONBLOCK|O_CLOEXEC) every
 * INTERVAL_MS (default 100) until it succeeds or TIMEOUT_MS (default 0 = one
 * attempt) has passed, and prints "acquired PATH after N ms (A attempts)".
 *   -r        print the 64-byte lock value block (LVB) read after acquiring
 *   -w TEXT   write TEXT, zero-padded to 64 bytes, as the LVB (a short write
 *             would only replace a prefix of the old value)
 *   -H        hold: keep the fd open until SIGTERM/SIGINT, then release
 *   -u        after close(), unlink(PATH): without it the node keeps the lock
 *             cached at EX and other nodes' trylocks keep failing
 *   -E EVENT  write "EVENT acquired" / "EVENT released" lines to the host
 *             event channel (/dev/virtio-ports/events, a tty: O_NOCTTY)
 * Exit: 0 acquired (and released), 2 busy (ETXTBSY/EAGAIN until timeout),
 *       1 other error.  SIGKILL while holding leaves the lock cached, which is
 *       what a crashed daemon does.
 * Note: O_NONBLOCK opens can still sleep in D state (dead lock master, DLM
 * recovery), so one attempt may take seconds; elapsed time includes that.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void event(const char *ev, const char *what)
{
	if (!ev)
		return;
	int fd = open("/dev/virtio-ports/events", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	char line[256];
	int n = snprintf(line, sizeof line, "%s %s\n", ev, what);
	if (write(fd, line, n) < 0)
		perror("dlmtry: event write");
	close(fd);
}

static const char *errname(int e)
{
	switch (e) {
	case ETXTBSY: return "ETXTBSY";
	case EAGAIN: return "EAGAIN";
	case EBUSY: return "EBUSY";
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case ENOTCONN: return "ENOTCONN";
	default: return strerror(e);
	}
}

int main(int argc, char **argv)
{
	long interval = 100, timeout = 0;
	int hold = 0, do_unlink = 0, do_read = 0, c;
	const char *wtext = NULL, *ev = NULL;

	while ((c = getopt(argc, argv, "i:t:HurE:w:")) != -1) {
		switch (c) {
		case 'i': interval = atol(optarg); break;
		case 't': timeout = atol(optarg); break;
		case 'H': hold = 1; break;
		case 'u': do_unlink = 1; break;
		case 'r': do_read = 1; break;
		case 'w': wtext = optarg; break;
		case 'E': ev = optarg; break;
		default:
			fprintf(stderr, "usage: dlmtry [-i MS] [-t MS] [-H] [-u] [-r] [-w TEXT] [-E EVENT] PATH\n");
			return 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "dlmtry: need exactly one PATH\n");
		return 1;
	}
	const char *path = argv[optind];
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = { .sa_handler = on_sig };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	long long t0 = now_ms();
	long attempts = 0;
	int fd, err;
	for (;;) {
		attempts++;
		fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
		if (fd >= 0)
			break;
		err = errno;
		if (err != ETXTBSY && err != EAGAIN && err != EINTR) {
			printf("error %s on %s after %lld ms (%ld attempts)\n", errname(err), path,
			       now_ms() - t0, attempts);
			return 1;
		}
		if (stop || now_ms() - t0 >= timeout) {
			printf("busy %s after %lld ms (%ld attempts, last %s)\n", path, now_ms() - t0,
			       attempts, errname(err));
			return 2;
		}
		struct timespec d = { interval / 1000, (interval % 1000) * 1000000 };
		nanosleep(&d, NULL);
	}
	printf("acquired %s after %lld ms (%ld attempts)\n", path, now_ms() - t0, attempts);
	event(ev, "acquired");

	int rc = 0;
	if (do_read) {
		char lvb[65] = { 0 };
		ssize_t n = pread(fd, lvb, 64, 0);
		for (ssize_t i = 0; i < n; i++)
			if (lvb[i] && (lvb[i] < 32 || lvb[i] > 126))
				lvb[i] = '?';
		printf("lvb %zd bytes: \"%s\"\n", n, lvb);
	}
	if (wtext) {
		char lvb[64] = { 0 };
		size_t n = strlen(wtext);
		memcpy(lvb, wtext, n < sizeof lvb ? n : sizeof lvb);
		if (pwrite(fd, lvb, sizeof lvb, 0) != sizeof lvb) {
			printf("lvb write failed: %s\n", errname(errno));
			rc = 1;
		}
	}
	if (hold) {
		printf("holding %s (pid %d)\n", path, (int)getpid());
		/* block the signals so one arriving before sigsuspend is not lost */
		sigset_t blk, old;
		sigemptyset(&blk);
		sigaddset(&blk, SIGTERM);
		sigaddset(&blk, SIGINT);
		sigprocmask(SIG_BLOCK, &blk, &old);
		while (!stop)
			sigsuspend(&old);
	}
	close(fd);
	if (do_unlink && unlink(path) != 0) {
		printf("unlink %s: %s\n", path, errname(errno));
		rc = 1;
	}
	printf("released %s%s\n", path, do_unlink ? " (unlinked)" : " (closed, still cached)");
	event(ev, "released");
	return rc;
}
