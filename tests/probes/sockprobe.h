/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sockprobe.h - the framework that every family of probes uses: the line a
 * probe prints, the checked payload, connected pairs, poll helpers, and the
 * sender and reader threads.  sockprobe.c has the code and main(); each
 * sockprobe_<family>.c has its probes and their table.
 *
 * A probe is a void function.  It opens its own connection (pair_open()),
 * runs one scenario, and builds its line with add(): "name=value" fields,
 * return values as R(call) formats them, event masks as events_fmt() does.
 * The framework prints "NAME:" before the fields, and " path=..." after
 * them with -P.
 */
#ifndef __SOCKPROBE_H
#define __SOCKPROBE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/util.h"

#define KiB		1024
#define MiB		(1024 * 1024)
#define BUF_SIZE	(256 * KiB)
#define PROBE_TIMEOUT	20	/* seconds before a hung probe is reported */
#define WAIT_MS		3000	/* longest wait for data to arrive */

/* From the kernel's include/net/tcp_states.h (not exported to user space). */
#define TCP_STATE_FIN_WAIT2	5
#define TCP_STATE_TIME_WAIT	6
#define TCP_STATE_CLOSE_WAIT	8
#define TCP_STATE_LAST_ACK	9
#define TCP_STATE_CLOSING	11

/* The probe that runs now; the options that change how probes connect. */
extern const char *probe_name;
extern bool data_bad;		/* a payload byte came wrong: "data=BAD" */
extern const char *probe_path;	/* -P: "bypass", "tcp", "mixed" or none */
extern int listen_lowat;	/* SO_RCVLOWAT on the listener, if not 0 */
extern void (*listen_setup)(int fd);	/* if set: options on the listener */
extern void (*client_setup)(int fd);	/* if set: options before connect() */
extern const char *map_pin;	/* -M: the pinned sockhash */

/* --- the probe table ------------------------------------------------------ */

struct probe {
	const char *name;
	void (*fn)(void);
	bool not_in_all;	/* needs the bypass: run only by name */
};

#define PROBE(n) { #n, probe_##n, false }

/* One table per family, each ending with an empty entry; in -l order. */
extern const struct probe eof_probes[];
extern const struct probe read_probes[];
extern const struct probe poll_probes[];
extern const struct probe send_probes[];
extern const struct probe close_probes[];
extern const struct probe map_probes[];
extern const struct probe flow_probes[];
extern const struct probe opts_probes[];

/* --- output ------------------------------------------------------------- */

void add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ret_fmt(ssize_t r, int err);
const char *events_fmt(unsigned int ev);
void add_data(void);

/* R(call): run call and format its result with the errno it left. */
#define R(call) ({ ssize_t __r = (call); ret_fmt(__r, errno); })

/* --- the payload ---------------------------------------------------------- */

/* One direction of a connection: its pattern seed and how far it got. */
struct stream {
	uint32_t seed;
	uint64_t off;
};

/* Read sizes that no buffer size divides, for drain(). */
extern const size_t odd_pieces[8];

void check(struct stream *st, const unsigned char *buf, size_t len);
void send_pat(int fd, struct stream *st, size_t len, int flags);
ssize_t recv_pat(int fd, struct stream *st, size_t len, int flags);
uint64_t drain(int fd, struct stream *st, const size_t *pieces,
	       const char **last);

/* --- sockets ------------------------------------------------------------- */

struct pair {
	int cli, srv;
};

void set_int(int fd, int level, int opt, int val);
void set_rcvtimeo(int fd, int ms);
int listener(void);
int client(void);
uint64_t bytes_received(int fd);
const char *path_of(uint64_t bytes_via_tcp, uint64_t bytes_sent);
void handshake_srv(int srv);
void handshake_cli(int cli);
void pair_open(struct pair *p);
void pair_close(struct pair *p);
bool wait_state(int fd, int state);
int inq(int fd);
void wait_inq(int fd, int n);
void wait_acked(int fd);
void timestamps_on(void);
short wait_events_ms(int fd, short events, int ms);
short wait_events(int fd, short events);
short poll_now(int fd);

static inline void msleep(int ms)
{
	usleep(ms * 1000);
}

/* --- a sender thread, for payloads larger than the socket buffers --------- */

enum sender_kind { SEND_PLAIN, SEND_SENDFILE, SEND_SPLICE };
enum after { AFTER_NONE, AFTER_SHUT, AFTER_CLOSE, AFTER_OOB };

struct sender {
	pthread_t th;
	int fd;
	struct stream st;
	size_t len, chunk;
	int gap_ms;		/* pause between chunks */
	enum sender_kind kind;
	enum after after;
	int tid;		/* its thread id, once running */
	bool done;
};

void sender_start(struct sender *s);
void sender_wait(struct sender *s);
void sender_join(struct sender *s);

/* --- a reader thread that is already blocked in recv() ------------------- */

struct reader {
	pthread_t th;
	int fd;
	size_t len;
	int flags;
	struct stream st;
	int tid;		/* its thread id, once running */
	int n;			/* results so far; read with __atomic */
	bool done;
	char res[8][32];
};

void reader_start(struct reader *rd);
char thread_state(int tid);
void wait_blocked(struct reader *rd);
void wait_results(struct reader *rd, int n, int ms);
void reader_join(struct reader *rd, const char *name);

#endif /* __SOCKPROBE_H */
