# SPDX-License-Identifier: GPL-2.0
#
# plot.gp - stream throughput against write size for the three transports.
#
#   gnuplot -c plot.gp throughput.dat throughput.png
#
# Input columns (from report.jq): size, then median/min/max MB/s for TCP,
# bypass, Unix and TCP with TCP_NODELAY.  Points are medians, bars span
# min to max.

if (ARGC < 2) {
	print "usage: gnuplot -c plot.gp DATA PNG"
	exit status 2
}

set terminal pngcairo size 900,560 font ",11"
set output ARG2
set title "Stream throughput by write size (sockbench, median and min-max)"
set xlabel "write size (bytes per send)"
set ylabel "MB/s"
set logscale xy 2
set xtics ("64" 64, "256" 256, "1K" 1024, "4K" 4096, "16K" 16384, "64K" 65536)
set ytics format "%.0f"
set logscale y 10
set grid xtics ytics mytics
set key top left
set xrange [48:90000]

plot ARG1 using 1:2:3:4 with yerrorlines lw 2 pt 7 title "TCP (loopback)", \
     ARG1 using 1:5:6:7 with yerrorlines lw 2 pt 5 title "TCP + sockops bypass", \
     ARG1 using 1:8:9:10 with yerrorlines lw 2 pt 9 title "Unix domain socket", \
     ARG1 using 1:11:12:13 with yerrorlines lw 1 dt 2 pt 6 title "TCP, TCP\\_NODELAY (no coalescing)"
