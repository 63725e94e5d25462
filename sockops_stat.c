// SPDX-License-Identifier: GPL-2.0
/*
 * sockops_stat - read what status.sh shows, in one process, as one JSON line.
 *
 * Usage: sockops_stat [--walk] PIN_DIR
 *
 * status.sh used to ask bpftool five times and walk the cgroup tree with
 * "bpftool cgroup tree", which loads the kernel's whole BTF (5 MB) for
 * every cgroup that has a program attached: 1.5 s with an empty map on a
 * busy host, before the sockhash dump that took 8 s more when full.  This
 * does the same with a few dozen bpf() calls:
 *
 * - the pinned programs' names and IDs;
 * - the sockhash's ID and capacity (how full it is comes from the counters:
 *   sockets_inserted - sockets_removed, see bpf_sockops.c);
 * - every field of the pinned stats (per-CPU, summed), config and backlog
 *   arrays, by the names in the maps' BTF, so a field added to struct
 *   bypass_stats or struct bypass_config shows up with no change here;
 * - the skip lists (hashes of a port or cgroup ID to a socket count), with
 *   the path of each skipped cgroup found on the way through the tree;
 * - the page size, the pages TCP holds now (/proc/net/sockstat) and
 *   whether TCP is under memory pressure (/proc/net/protocols);
 * - the cgroups that bpf_sockmap, bpf_release and bpf_sockopt are attached
 *   to, by querying each cgroup v2 directory for those attach types only;
 * - the option gate: how many sockets set an option the bypass cannot
 *   honour (bpf_sockopt.c);
 * - with --walk, the sockhash's entries counted one key at a time (slow at
 *   a million entries, for checking the counters).
 *
 * A missing pin is reported as null; status.sh decides what that means.
 * Errors go to stderr, exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

static const char *pin_dir;
static __u32 sockops_id, release_id, sockopt_id;

/* The skipped cgroups' IDs (inode numbers), and their paths once found. */
#define MAX_SKIP 64
static unsigned long long skip_ids[MAX_SKIP];
static char *skip_paths[MAX_SKIP];
static int n_skip;

/* Print S as a JSON string. */
static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* Open a pin of our directory; -1 if it is not there. */
static int open_pin(const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
	return bpf_obj_get(path);
}

/*
 * Print "KEY": and open the pinned object PIN, filling INFO (LEN bytes: a
 * bpf_prog_info or bpf_map_info).  Returns its fd, or prints null and
 * returns -1 when it is not there.
 */
static int open_info(const char *key, const char *pin, void *info, __u32 len)
{
	int fd = open_pin(pin);

	printf("\"%s\":", key);
	if (fd >= 0 && !bpf_obj_get_info_by_fd(fd, info, &len))
		return fd;
	printf("null");
	if (fd >= 0)
		close(fd);
	return -1;
}

/* "KEY": {"name": ..., "id": ...} or null; returns the program's ID. */
static __u32 show_prog(const char *key, const char *pin)
{
	struct bpf_prog_info info = {};
	int fd = open_info(key, pin, &info, sizeof(info));

	if (fd < 0)
		return 0;
	printf("{\"name\":");
	json_str(info.name);
	printf(",\"id\":%u}", info.id);
	close(fd);
	return info.id;
}

/*
 * Print every field of the struct in DATA (NCPUS copies STRIDE bytes
 * apart, summed) as "name": value, using the map's BTF.
 */
static int show_fields(const struct bpf_map_info *info, const char *data,
		       int ncpus, size_t stride)
{
	const struct btf_member *m;
	const struct btf_type *t;
	struct btf *btf;
	int i, cpu, n = 0;

	btf = btf__load_from_kernel_by_id(info->btf_id);
	if (!btf) {
		fprintf(stderr, "sockops_stat: no BTF for map %s\n", info->name);
		return -1;
	}
	t = btf__type_by_id(btf, btf__resolve_type(btf, info->btf_value_type_id));
	if (!t || !btf_is_struct(t)) {
		fprintf(stderr, "sockops_stat: map %s: value is not a struct\n",
			info->name);
		btf__free(btf);
		return -1;
	}
	putchar('{');
	for (i = 0, m = btf_members(t); i < btf_vlen(t); i++, m++) {
		__u32 off = btf_member_bit_offset(t, i) / 8;
		long long size = btf__resolve_size(btf, m->type);
		unsigned long long sum = 0;

		/* Only whole unsigned integers: our structs hold nothing else. */
		if (btf_member_bitfield_size(t, i) || (size != 4 && size != 8))
			continue;
		for (cpu = 0; cpu < ncpus; cpu++) {
			const char *p = data + cpu * stride + off;

			if (size == 8)
				sum += *(const __u64 *)p;
			else
				sum += *(const __u32 *)p;
		}
		printf("%s", n++ ? "," : "");
		json_str(btf__name_by_offset(btf, m->name_off));
		printf(":%llu", sum);
	}
	putchar('}');
	btf__free(btf);
	return 0;
}

/* "KEY": {fields} of entry 0 of a pinned (per-CPU) array, or null. */
static int show_array(const char *key, const char *pin)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), zero = 0;
	int fd, ncpus = 1, err = -1;
	size_t stride;
	char *data;

	printf("\"%s\":", key);
	fd = open_pin(pin);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) {
		printf("null");
		if (fd >= 0)
			close(fd);
		return 0;
	}
	/* A per-CPU lookup returns one value per possible CPU, 8-aligned. */
	stride = info.value_size;
	if (info.type == BPF_MAP_TYPE_PERCPU_ARRAY) {
		ncpus = libbpf_num_possible_cpus();
		stride = (info.value_size + 7) & ~7UL;
	}
	data = calloc(ncpus > 0 ? ncpus : 1, stride);
	if (data && ncpus > 0 && !bpf_map_lookup_elem(fd, &zero, data))
		err = show_fields(&info, data, ncpus, stride);
	else
		fprintf(stderr, "sockops_stat: cannot read %s/%s: %s\n",
			pin_dir, pin, strerror(errno));
	free(data);
	close(fd);
	return err;
}

/* Count the sockhash's keys with get_next_key: one call per entry. */
static long walk_map(int fd, __u32 key_size)
{
	char *key = calloc(2, key_size), *next = key + key_size;
	void *prev = NULL;
	long n = 0;

	if (!key)
		return -1;
	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(key, next, key_size);
		prev = key;
		n++;
	}
	if (errno != ENOENT)
		n = -1;
	free(key);
	return n;
}

static int show_map(const char *pin, int walk)
{
	struct bpf_map_info info = {};
	int fd = open_info("map", pin, &info, sizeof(info));
	long n;

	if (fd < 0)
		return 0;
	printf("{\"name\":");
	json_str(info.name);
	printf(",\"id\":%u,\"max_entries\":%u", info.id, info.max_entries);
	if (walk) {
		n = walk_map(fd, info.key_size);
		if (n < 0) {
			fprintf(stderr, "sockops_stat: cannot walk %s/%s: %s\n",
				pin_dir, pin, strerror(errno));
			close(fd);
			return -1;
		}
		printf(",\"walked\":%ld", n);
	}
	putchar('}');
	close(fd);
	return 0;
}

/*
 * "KEY": [{"key": K, "sockets": V}, ...] of a pinned hash of __u32 or __u64
 * keys to __u64 values, or []; with SAVE, the keys go to skip_ids.
 */
static void show_hash(const char *key, const char *pin, int save)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	unsigned long long k, v;
	char cur[8], next[8];
	void *prev = NULL;
	int fd, n = 0;

	printf("\"%s\":[", key);
	fd = open_pin(pin);
	if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) ||
	    (info.key_size != 4 && info.key_size != 8) || info.value_size != 8) {
		putchar(']');
		if (fd >= 0)
			close(fd);
		return;
	}
	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(cur, next, sizeof(cur));
		prev = cur;
		if (bpf_map_lookup_elem(fd, cur, &v))
			continue;	/* deleted meanwhile */
		k = info.key_size == 4 ? *(__u32 *)cur : *(__u64 *)cur;
		printf("%s{\"key\":%llu,\"sockets\":%llu}", n++ ? "," : "", k, v);
		if (save && n_skip < MAX_SKIP)
			skip_ids[n_skip++] = k;
	}
	putchar(']');
	close(fd);
}

/* The pages TCP sockets hold now: "TCP: ... mem N" in /proc/net/sockstat. */
static long tcp_mem_pages(void)
{
	FILE *f = fopen("/proc/net/sockstat", "r");
	char line[256], *p;
	long pages = -1;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "TCP:", 4) && (p = strstr(line, " mem ")))
			pages = atol(p + 5);
	if (f)
		fclose(f);
	return pages;
}

/*
 * 1 if TCP is under memory pressure, 0 if not, -1 if unknown: the "press"
 * column of the TCP line in /proc/net/protocols, "yes" or "no".
 */
static int tcp_pressure(void)
{
	FILE *f = fopen("/proc/net/protocols", "r");
	char line[512], press[8];
	int ret = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "TCP %*u %*d %*d %7s", press) == 1)
			ret = !strcmp(press, "yes") ? 1 : !strcmp(press, "no") ? 0 : -1;
	if (f)
		fclose(f);
	return ret;
}

/* Is program ID directly attached to cgroup FD as TYPE? */
static int attached(int fd, enum bpf_attach_type type, __u32 id)
{
	__u32 ids[64], cnt = 64, flags, i;

	if (!id || bpf_prog_query(fd, type, 0, &flags, ids, &cnt))
		return 0;
	for (i = 0; i < cnt && i < 64; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* The cgroups found so far, printed at the end. */
static char **cg_sockops, **cg_release, **cg_sockopt;
static int n_sockops, n_release, n_sockopt;

static int add_cgroup(char ***list, int *n, const char *path)
{
	char **l = realloc(*list, (*n + 1) * sizeof(*l));

	if (!l)
		return -1;
	*list = l;
	l[*n] = strdup(path);
	return l[(*n)++] ? 0 : -1;
}

static int visit_cgroup(const char *path, const struct stat *sb, int flag,
			struct FTW *ftw)
{
	int fd, err = 0;

	(void)ftw;
	if (flag != FTW_D)
		return 0;
	for (fd = 0; fd < n_skip; fd++)
		if (!skip_paths[fd] && skip_ids[fd] == sb->st_ino)
			skip_paths[fd] = strdup(path);
	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 0;	/* gone meanwhile */
	if (attached(fd, BPF_CGROUP_SOCK_OPS, sockops_id))
		err = add_cgroup(&cg_sockops, &n_sockops, path);
	if (!err && attached(fd, BPF_CGROUP_INET_SOCK_RELEASE, release_id))
		err = add_cgroup(&cg_release, &n_release, path);
	if (!err && attached(fd, BPF_CGROUP_SETSOCKOPT, sockopt_id))
		err = add_cgroup(&cg_sockopt, &n_sockopt, path);
	close(fd);
	return err;
}

/* The first cgroup v2 mount, as findmnt -t cgroup2 would say. */
static char *cgroup2_root(void)
{
	FILE *f = setmntent("/proc/self/mounts", "r");
	struct mntent *m;
	char *root = NULL;

	while (f && (m = getmntent(f)))
		if (!strcmp(m->mnt_type, "cgroup2")) {
			root = strdup(m->mnt_dir);
			break;
		}
	if (f)
		endmntent(f);
	return root;
}

static void show_list(const char *key, char **list, int n)
{
	int i;

	printf("\"%s\":[", key);
	for (i = 0; i < n; i++) {
		printf("%s", i ? "," : "");
		json_str(list[i]);
	}
	putchar(']');
}

int main(int argc, char **argv)
{
	int walk = 0, err = 0, i;
	char *root;

	if (argc == 3 && !strcmp(argv[1], "--walk")) {
		walk = 1;
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "Usage: sockops_stat [--walk] PIN_DIR\n");
		return 2;
	}
	pin_dir = argv[1];
	libbpf_set_print(NULL);

	printf("{\"pin_dir\":");
	json_str(pin_dir);
	printf(",\"programs\":{");
	sockops_id = show_prog("sock_ops", "bpf_sockmap");
	putchar(',');
	release_id = show_prog("sock_release", "bpf_release");
	putchar(',');
	show_prog("sk_msg", "bpf_redir");
	putchar(',');
	sockopt_id = show_prog("setsockopt", "bpf_sockopt");
	printf("},");
	err |= show_map("sock_ops_map", walk);
	putchar(',');
	err |= show_array("counters", "stats");
	putchar(',');
	err |= show_array("config", "config");
	putchar(',');
	err |= show_array("backlog", "backlog");
	putchar(',');
	show_array("opt_gate", "opt_gate");
	putchar(',');
	show_hash("skip_ports", "skip_ports", 0);
	putchar(',');
	show_hash("skip_cgroups", "skip_cgroups", 1);
	printf(",\"page_size\":%ld,\"tcp_mem_pages\":%ld,\"tcp_pressure\":%d",
	       sysconf(_SC_PAGESIZE), tcp_mem_pages(), tcp_pressure());

	root = cgroup2_root();
	if (root && (sockops_id || release_id || sockopt_id || n_skip) &&
	    nftw(root, visit_cgroup, 32, FTW_PHYS | FTW_MOUNT)) {
		fprintf(stderr, "sockops_stat: cannot walk %s: %s\n", root,
			strerror(errno));
		err = -1;
	}
	putchar(',');
	show_list("cgroups", cg_sockops, n_sockops);
	putchar(',');
	show_list("release_cgroups", cg_release, n_release);
	putchar(',');
	show_list("sockopt_cgroups", cg_sockopt, n_sockopt);
	printf(",\"skip_cgroup_paths\":{");
	for (i = 0; i < n_skip; i++) {
		printf("%s\"%llu\":", i ? "," : "", skip_ids[i]);
		if (skip_paths[i])
			json_str(skip_paths[i]);
		else
			printf("null");
	}
	printf("}}\n");
	free(root);
	return err ? 1 : 0;
}
