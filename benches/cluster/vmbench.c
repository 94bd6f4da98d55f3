/*
 * vmbench - guest side of benches/cluster.py (the VM cluster benchmark).
 * Built static on the host (gcc -static) into the cluster's 9p share.
 *
 * Every event goes to the host event channel (/dev/virtio-ports/events) as
 * "TAG WHAT ... g=GUEST_MONOTONIC_MS"; the host stamps each line on arrival
 * with its own CLOCK_MONOTONIC, so events of both nodes share one clock.
 *
 *   vmbench ping N TAG
 *       N events "TAG ping I g=MS", 10 ms apart: the host's stamp minus g
 *       varies by the channel's jitter, the resolution of every figure.
 *   vmbench hold DIR PREFIX N TAG
 *       EX-trylock (O_RDWR|O_CREAT|O_NONBLOCK) DIR/PREFIX0..N-1 once each,
 *       "TAG held N" (exit 2 if one is busy), hold until SIGTERM, then close
 *       and unlink them all, "TAG released".
 *   vmbench take DIR PREFIX N INTERVAL_MS TAG
 *       The raw try-lock loop (the DLM's floor): "TAG start", then sweeps
 *       over the files not yet won, one trylock each, INTERVAL_MS apart,
 *       until all N are won: "TAG all N sweeps=S"; then holds like `hold`.
 *   vmbench watch SOCKET N TAG
 *       A NOTIFY_SOCKET for dlm-electd: binds SOCKET ("TAG watching"), reads
 *       its STATUS= lines ("master: a, b; standby: c", counted past 10
 *       resources: "master: 990 (r0, r1, r10, …)") and writes
 *       "TAG all-master", "TAG all-standby", "TAG some-master" (some, not
 *       all) or "TAG mixed" (none master, not all standby: acquiring,
 *       stalled...) each time the daemon's N resources enter one of those.
 *   vmbench release CONTROL_SOCKET PREFIX N HOLD_OFF_MS TAG
 *   vmbench resume CONTROL_SOCKET PREFIX N TAG
 *       The request `dlm-electd release NAME --hold-off` (`resume NAME`)
 *       sends, for PREFIX0..N-1 at once: N connections to the daemon's
 *       control socket, each request sent before any reply is read.
 *       "TAG start" before the first, "TAG done errors=E" after the last
 *       reply; exit 1 if any failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
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

static void event(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 32, fmt, ap);
	va_end(ap);
	n += snprintf(line + n, 32, " g=%lld\n", now_ms());
	/* a tty: O_NOCTTY, or a session leader would make it its terminal */
	int fd = open("/dev/virtio-ports/events", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 || write(fd, line, n) != n)
		perror("vmbench: event");
	if (fd >= 0)
		close(fd);
	fputs(line, stdout);
	fflush(stdout);
}

static void sleep_ms(long ms)
{
	struct timespec d = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&d, NULL);
}

static void more_fds(void)
{
	struct rlimit r = { 65536, 65536 };
	setrlimit(RLIMIT_NOFILE, &r);
}

static int trylock(const char *dir, const char *prefix, int i)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s%d", dir, prefix, i);
	return open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
}

/* Hold the fds until SIGTERM, then close and unlink: nothing stays cached. */
static int hold_and_release(const char *dir, const char *prefix, int n, int *fds, const char *tag)
{
	sigset_t blk, old;
	sigemptyset(&blk);
	sigaddset(&blk, SIGTERM);
	sigaddset(&blk, SIGINT);
	sigprocmask(SIG_BLOCK, &blk, &old);
	while (!stop)
		sigsuspend(&old);
	int bad = 0;
	for (int i = 0; i < n; i++) {
		char path[4096];
		close(fds[i]);
		snprintf(path, sizeof path, "%s/%s%d", dir, prefix, i);
		if (unlink(path) != 0)
			bad++;
	}
	event("%s released unlink_errors=%d", tag, bad);
	return bad ? 1 : 0;
}

static int cmd_hold(const char *dir, const char *prefix, int n, const char *tag)
{
	int *fds = calloc(n, sizeof *fds);
	for (int i = 0; i < n; i++) {
		fds[i] = trylock(dir, prefix, i);
		if (fds[i] < 0) {
			fprintf(stderr, "vmbench: %s/%s%d: %s\n", dir, prefix, i, strerror(errno));
			return 2;
		}
	}
	event("%s held %d", tag, n);
	return hold_and_release(dir, prefix, n, fds, tag);
}

static int cmd_take(const char *dir, const char *prefix, int n, long interval, const char *tag)
{
	int *fds = malloc(n * sizeof *fds);
	for (int i = 0; i < n; i++)
		fds[i] = -1;
	int won = 0;
	long sweeps = 0;
	event("%s start", tag);
	while (won < n && !stop) {
		sweeps++;
		for (int i = 0; i < n; i++) {
			if (fds[i] >= 0)
				continue;
			fds[i] = trylock(dir, prefix, i);
			if (fds[i] >= 0)
				won++;
			else if (errno != ETXTBSY && errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "vmbench: %s/%s%d: %s\n", dir, prefix, i, strerror(errno));
		}
		if (won < n)
			sleep_ms(interval);
	}
	if (won < n)
		return 2;
	event("%s all %d sweeps=%ld", tag, n, sweeps);
	return hold_and_release(dir, prefix, n, fds, tag);
}

/* Masters and standbys in "master: a, b; standby: c; stalled: d", or,
 * past 10 resources, "master: 990 (r0, r1, r10, …); standby: 10 (…)"
 * (the daemon counts then; docs/operating.md, STATUS=). */
static void count(const char *status, int n, int *master, int *standby)
{
	*master = *standby = 0;
	const char *p = status;
	while (*p) {
		const char *colon = strchr(p, ':');
		if (!colon)
			break;
		const char *end = strchr(colon, ';');
		if (!end)
			end = colon + strlen(colon);
		int names = 1;
		if (n > 10)
			names = atoi(colon + 1);
		else
			for (const char *q = colon; q < end; q++)
				names += *q == ',';
		if (colon - p == 6 && !strncmp(p, "master", 6))
			*master = names;
		else if (colon - p == 7 && !strncmp(p, "standby", 7))
			*standby = names;
		p = *end ? end + 2 : end;
	}
}

static int cmd_watch(const char *path, int n, const char *tag)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strncpy(a.sun_path, path, sizeof a.sun_path - 1);
	unlink(path);
	int big = 4 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
	if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("vmbench: bind");
		return 1;
	}
	event("%s watching", tag);
	static char buf[1 << 20];
	const char *last = "";
	while (!stop) {
		ssize_t len = recv(s, buf, sizeof buf - 1, 0);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			perror("vmbench: recv");
			return 1;
		}
		buf[len] = 0;
		for (char *line = buf; line && *line;) {
			char *nl = strchr(line, '\n');
			if (nl)
				*nl = 0;
			if (!strncmp(line, "STATUS=", 7)) {
				int m, sb;
				count(line + 7, n, &m, &sb);
				const char *now = m == n ? "all-master" : sb == n ? "all-standby"
						: m > 0 ? "some-master" : "mixed";
				if (strcmp(now, last)) {
					event("%s %s", tag, now);
					last = now;
				}
			}
			line = nl ? nl + 1 : NULL;
		}
	}
	unlink(path);
	return 0;
}

static int cmd_admin(const char *sock, const char *prefix, int n, const char *what, long hold_off,
		     const char *tag)
{
	more_fds();
	int *fds = malloc(n * sizeof *fds);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	strncpy(a.sun_path, sock, sizeof a.sun_path - 1);
	int errors = 0;
	event("%s start", tag);
	for (int i = 0; i < n; i++) {
		char req[256];
		int len = hold_off >= 0
			? snprintf(req, sizeof req, "{\"cmd\":\"%s\",\"resource\":\"%s%d\",\"hold_off_ms\":%ld}\n",
				   what, prefix, i, hold_off)
			: snprintf(req, sizeof req, "{\"cmd\":\"%s\",\"resource\":\"%s%d\"}\n", what, prefix, i);
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
		    write(fds[i], req, len) != len) {
			fprintf(stderr, "vmbench: %s %s%d: %s\n", what, prefix, i, strerror(errno));
			errors++;
			if (fds[i] >= 0)
				close(fds[i]);
			fds[i] = -1;
		}
	}
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0)
			continue;
		char rep[4096];
		size_t got = 0;
		ssize_t r;
		while (got < sizeof rep - 1 && (r = read(fds[i], rep + got, sizeof rep - 1 - got)) > 0)
			got += r;
		rep[got] = 0;
		if (got == 0 || strstr(rep, "\"error\"")) {
			fprintf(stderr, "vmbench: %s %s%d: %s\n", what, prefix, i, got ? rep : "no reply");
			errors++;
		}
		close(fds[i]);
	}
	event("%s done errors=%d", tag, errors);
	return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_sig };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	const char *cmd = argc > 1 ? argv[1] : "";
	if (!strcmp(cmd, "ping") && argc == 4) {
		for (int i = 0; i < atoi(argv[2]); i++) {
			event("%s ping %d", argv[3], i);
			sleep_ms(10);
		}
		return 0;
	}
	if (!strcmp(cmd, "hold") && argc == 6)
		return cmd_hold(argv[2], argv[3], atoi(argv[4]), argv[5]);
	if (!strcmp(cmd, "take") && argc == 7)
		return cmd_take(argv[2], argv[3], atoi(argv[4]), atol(argv[5]), argv[6]);
	if (!strcmp(cmd, "watch") && argc == 5)
		return cmd_watch(argv[2], atoi(argv[3]), argv[4]);
	if (!strcmp(cmd, "release") && argc == 7)
		return cmd_admin(argv[2], argv[3], atoi(argv[4]), "release", atol(argv[5]), argv[6]);
	if (!strcmp(cmd, "resume") && argc == 6)
		return cmd_admin(argv[2], argv[3], atoi(argv[4]), "resume", -1, argv[5]);
	fprintf(stderr, "usage: vmbench ping N TAG | hold DIR PREFIX N TAG | take DIR PREFIX N MS TAG |\n"
			"       watch SOCKET N TAG | release CTL PREFIX N HOLD_OFF_MS TAG | resume CTL PREFIX N TAG\n");
	return 2;
}
