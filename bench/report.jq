# SPDX-License-Identifier: GPL-2.0
#
# report.jq - turn bench.sh's runs (raw.jsonl, slurped) into results.md or
# into the plot's data file.
#
#   jq -rs --slurpfile m machine.json --arg out markdown|plotdata -f report.jq raw.jsonl
#
# Every figure is the median of the repetitions with min-max beside it;
# every ratio is between medians of this same run.

def median:
	sort | length as $n |
	if $n == 0 then null
	elif $n % 2 == 1 then .[($n - 1) / 2]
	else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;

# stat(f): median, min and max of f over the runs in the input array.
def stat(f): [.[] | f] | {med: median, min: min, max: max, n: length};

def runs($tool; $test; $lbl; $size):
	[.[] | select(.tool == $tool and .test == $test and .label == $lbl and
		      .size == $size)];

def num:
	if . == null then "–"
	elif . >= 100 then round | tostring
	elif . >= 10 then (. * 10 | round) / 10 | tostring
	else (. * 100 | round) / 100 | tostring end;

def cell: if .med == null then "–" else "\(.med | num) (\(.min | num)–\(.max | num))" end;

def ratio($a; $b):
	if $a.med == null or $b.med == null or $b.med == 0 then "–"
	else "\($a.med / $b.med | num)×" end;

def size_name:
	if . >= 1024 then "\(. / 1024) KiB" else "\(.) B" end;

def row: "| " + join(" | ") + " |";

def sizes($tool; $test): [.[] | select(.tool == $tool and .test == $test) | .size] | unique;

# The three transports' stat of metric f for one tool/test/size.
def trio($tool; $test; $size; f):
	{tcp: (runs($tool; $test; "tcp"; $size) | stat(f)),
	 bypass: (runs($tool; $test; "bypass"; $size) | stat(f)),
	 unix: (runs($tool; $test; "unix"; $size) | stat(f)),
	 nodelay: (runs($tool; $test; "tcp-nodelay"; $size) | stat(f))};

def stream_table:
	. as $all |
	"| write size | TCP | bypass | Unix | bypass/TCP | bypass/Unix | TCP, NODELAY | bypass/NODELAY |",
	"|---:|---:|---:|---:|---:|---:|---:|---:|",
	(sizes("sockbench"; "stream")[] as $s |
	 ($all | trio("sockbench"; "stream"; $s; .MBps)) as $t |
	 [($s | size_name), ($t.tcp | cell), ($t.bypass | cell), ($t.unix | cell),
	  ratio($t.bypass; $t.tcp), ratio($t.bypass; $t.unix),
	  ($t.nodelay | cell), ratio($t.bypass; $t.nodelay)] | row);

def cpu_table:
	. as $all |
	"| write size | TCP | bypass | Unix | TCP, NODELAY | bypass/TCP |",
	"|---:|---:|---:|---:|---:|---:|",
	(sizes("sockbench"; "stream")[] as $s |
	 ($all | trio("sockbench"; "stream"; $s; .cpu_s_per_GB)) as $t |
	 [($s | size_name), ($t.tcp | cell), ($t.bypass | cell), ($t.unix | cell),
	  ($t.nodelay | cell), ratio($t.bypass; $t.tcp)] | row);

def latency_table($tool; $unix):
	. as $all |
	(if $unix then "| message | percentile | TCP | bypass | Unix | bypass/TCP | bypass/Unix |",
			"|---:|---:|---:|---:|---:|---:|---:|"
	 else "| message | percentile | TCP | bypass | bypass/TCP |",
	      "|---:|---:|---:|---:|---:|" end),
	(sizes($tool; "pingpong")[] as $s |
	 (["p50", "p99"][]) as $p |
	 ($all | trio($tool; "pingpong"; $s; .["\($p)_us"])) as $t |
	 if $unix then
		[($s | size_name), $p, ($t.tcp | cell), ($t.bypass | cell),
		 ($t.unix | cell), ratio($t.bypass; $t.tcp), ratio($t.bypass; $t.unix)]
	 else
		[($s | size_name), $p, ($t.tcp | cell), ($t.bypass | cell),
		 ratio($t.bypass; $t.tcp)]
	 end | row);

def connect_table:
	trio("sockbench"; "connect"; 0; .conns_per_s) as $t |
	"| TCP, no sock_ops | TCP, sock_ops attached | Unix | with/without sock_ops |",
	"|---:|---:|---:|---:|",
	([($t.tcp | cell), ($t.bypass | cell), ($t.unix | cell),
	  ratio($t.bypass; $t.tcp)] | row);

def iperf_table:
	. as $all |
	"| write size | TCP | bypass | bypass/TCP |",
	"|---:|---:|---:|---:|",
	(sizes("iperf3"; "stream")[] as $s |
	 ($all | trio("iperf3"; "stream"; $s; .MBps)) as $t |
	 [($s | size_name), ($t.tcp | cell), ($t.bypass | cell),
	  ratio($t.bypass; $t.tcp)] | row);

def r($a; $b): if $a.med == null or $b.med == null then null else $a.med / $b.med end;
def met($ok): if $ok == null then "–" elif $ok then "yes" else "**no**" end;

def targets_table:
	. as $all |
	[sizes("sockbench"; "stream")[] as $s |
	 ($all | trio("sockbench"; "stream"; $s; .MBps)) as $t |
	 {size: $s, r: r($t.bypass; $t.tcp)}] as $stream |
	($stream | map(select(.size == 65536)) | first // {} | .r) as $r64k |
	($stream | map(select(.r != null)) | min_by(.r) // {}) as $worst |
	([sizes("sockbench"; "pingpong")[] as $s |
	  ($all | trio("sockbench"; "pingpong"; $s; .p50_us)) as $t |
	  {size: $s, r: r($t.bypass; $t.tcp)}] | map(select(.r != null)) |
	 max_by(.r) // {}) as $pp |
	(trio("sockbench"; "connect"; 0; .conns_per_s) | r(.bypass; .tcp)) as $conn |
	"| target | measured (sockbench) | met |",
	"|---|---:|:---:|",
	(["bypass ≥ 1.3× TCP at 64 KiB writes", "\($r64k | num)×",
	  met(if $r64k == null then null else $r64k >= 1.3 end)] | row),
	(["bypass ≥ 1.0× TCP at every write size",
	  "\($worst.r | num)× at \($worst.size // 0 | size_name) (worst)",
	  met(if $worst.r == null then null else $worst.r >= 1.0 end)] | row),
	(["ping-pong p50 ≤ 0.75× TCP", "\($pp.r | num)× at \($pp.size // 0 | size_name) (worst)",
	  met(if $pp.r == null then null else $pp.r <= 0.75 end)] | row),
	(["connection rate ≥ 0.95× without sock_ops", "\($conn | num)×",
	  met(if $conn == null then null else $conn >= 0.95 end)] | row);

def proof_table:
	"| tool | test | bypass runs | bytes sent | bytes redirected | redirected/sent | bytes passed to TCP |",
	"|---|---|---:|---:|---:|---:|---:|",
	(map(select(.label == "bypass" and .test != "connect")) |
	 group_by([.tool, .test])[] |
	 (map(.bytes) | add) as $sent | (map(.redirected) | add) as $red |
	 [.[0].tool, .[0].test, (length | tostring), ($sent | tostring),
	  ($red | tostring), (if $sent > 0 then ($red / $sent * 10000 | round) / 10000 | tostring else "–" end),
	  (map(.passed) | add | tostring)] | row);

def markdown:
	$m[0] as $m |
	. as $all |
	"# Benchmark: loopback TCP, TCP with the bypass, Unix sockets",
	"",
	"Machine: \($m.nproc) CPUs, \($m.cpu), Linux \($m.kernel), \($m.os).",
	"Run: \($m.date), \(if $m.quick == 1 then "quick" else "full" end) mode, load average \($m.load) at the start, \($m.load_end) at the end (other work on the machine shows up as spread).",
	"sockbench: \($m.reps) repetitions of \($m.secs) s per figure; iperf3 \($m.iperf3 | split(" ")[1]) and sockperf \($m.sockperf): \($m.tool_reps) × \($m.tool_secs) s.",
	"",
	"Each cell is the median of the repetitions, with min–max in brackets; each ratio is between the medians of this run.",
	"The transports take turns within each repetition, in one network namespace; \"bypass\" is the same TCP code in a cgroup with the bypass attached.",
	"",
	"## Targets",
	"",
	targets_table,
	"",
	"## Stream throughput (sockbench, MB/s)",
	"",
	"The client writes one size for the whole run; the server reads 128 KiB at a time and checks every byte.",
	"TCP runs with Nagle on, as most applications do; \"TCP, NODELAY\" sets TCP_NODELAY on the sender, which turns off the coalescing of small writes that the bypass does not do either.",
	"",
	stream_table,
	"",
	"## CPU time per GB moved (sockbench stream, s/GB)",
	"",
	"User + system time of both processes (getrusage), per 10^9 bytes.",
	"",
	cpu_table,
	"",
	"## Ping-pong round trip (sockbench, µs)",
	"",
	"One message in flight, TCP_NODELAY; the server echoes it, the client times the round trip and checks the reply.",
	"",
	latency_table("sockbench"; true),
	"",
	"## Connection setup (sockbench, connections per second)",
	"",
	"connect(), accept(), the server closes, the client reads EOF and closes; one connection at a time.",
	"",
	connect_table,
	"",
	"## iperf3 stream throughput (MB/s)",
	"",
	"`iperf3 -c 127.0.0.1 -l SIZE` against `iperf3 -s` (dual-stack listener: v4-mapped accepted sockets).",
	"",
	iperf_table,
	"",
	"## sockperf ping-pong round trip (µs)",
	"",
	"`sockperf pp --tcp -m SIZE --full-rtt`.",
	"",
	latency_table("sockperf"; false),
	"",
	"## Proof that the bypass carried the bypass runs",
	"",
	"Deltas of the per-CPU counters in the pinned `stats` map (msgs/bytes_redirected, bytes_passed), summed over CPUs, around each bypass run.",
	"bench.sh stops if a bypass run's bytes redirected and passed to TCP (after a reader fell --max-queue behind) differ from its bytes sent (sockbench: ±0.1%; iperf3 and sockperf also redirect their control and warm-up traffic),",
	"or if any TCP or Unix run moves the counters at all (\([$all[] | select(.label != "bypass")] | length) such runs here, none did).",
	"",
	proof_table;

# size, then median/min/max for tcp, bypass and unix: gnuplot's input.
def plotdata:
	. as $all |
	"# size tcp_med tcp_min tcp_max bypass_med bypass_min bypass_max unix_med unix_min unix_max nodelay_med nodelay_min nodelay_max (MB/s)",
	(sizes("sockbench"; "stream")[] as $s |
	 ($all | trio("sockbench"; "stream"; $s; .MBps)) as $t |
	 [$s, $t.tcp.med, $t.tcp.min, $t.tcp.max, $t.bypass.med, $t.bypass.min,
	  $t.bypass.max, $t.unix.med, $t.unix.min, $t.unix.max,
	  $t.nodelay.med, $t.nodelay.min, $t.nodelay.max] |
	 map(tostring) | join(" "));

if $out == "plotdata" then plotdata else markdown end
