/* bench/nodes.h - the broker nodes a run talks to: several --url, where the
 * publishers connect (--publish-url), and the process of each (--pid).
 *
 * Owns: the lists given in --url, --publish-url and --pid, their checks,
 * the resolved address of each node, which node each subscriber connects to,
 * the CPU each node's process used in each step, and the lines of the report
 * that show them. Does not own: the connections (run.c, readers.c), the
 * steps (run.c, staterun.c), the report's frame (report.c, pubs.c).
 *
 * DESIGN: a cluster of nodes (docs/cluster.md) is measured by one bench with
 * its subscribers spread over the nodes and its publishers on one of them,
 * so every delivery to a subscriber on another node than the publisher's
 * crossed the engine (Redis). Only the scenarios that take --publish-url
 * accept a list; the others keep one URL and at most one PID. With one URL
 * and one PID everything here reduces to what --url and --pid always were:
 * B.url is the one node, and the broker's CPU is that process's.
 *
 * nodes_set_pids() and nodes_setup() run in main.c before the loop exists;
 * the rest on the loop's thread (and in reader processes, which inherit the
 * parsed lists through fork()). */
#ifndef BENCH_NODES_H
#define BENCH_NODES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bench.h"

/* The most nodes (URLs or PIDs) one run takes. */
#define NODES_MAX 16

/* nodes_set_pids() - read --pid's value: one process id or several,
 * comma-separated, each of a running process (/proc/PID/status readable).
 * Sets o->pid to the first (idle's RSS, and the CPU with one node).
 * @why: [out] the reason on failure, @n bytes. Return: 0, or -1. */
int nodes_set_pids(struct opts *o, const char *list, char *why, size_t n);

/* nodes_set_publish_url() - remember --publish-url's value (borrowed: it
 * points into argv). Checked by nodes_setup(). */
void nodes_set_publish_url(const char *url);

/* nodes_setup() - after every flag: split o->url into its nodes, parse and
 * resolve each (and --publish-url, default the first node) and set B.url to
 * the publishers' node. @lists: 1 if the scenario takes several nodes (it
 * takes --publish-url); 0: a list in --url or --pid is refused, and B.url is
 * the one --url. With --pid, its length must be
 * the number of URLs, PID i being node i's process.
 * Return: 0, or -1 with the reason in @why (main.c: exit status 2). */
int nodes_setup(struct opts *o, int lists, char *why, size_t n);

/* nodes_count() - the nodes in --url (1 without a list). */
unsigned nodes_count(void);

/* nodes_sub_url() - the address subscriber @i (0 .. B.nsubs-1, its index in
 * B.peers) connects to. The k-th subscriber of channel c (i = c + k * M with
 * M channels) goes to node (c + k) mod N: round-robin over the nodes within
 * each channel, so every channel has subscribers on every node it can, and
 * each node gets an equal share. Other connections use B.url. */
const herald_url_t *nodes_sub_url(uint32_t i);

/* nodes_peer_url() - the address peer @p of B.peers connects to:
 * nodes_sub_url() for a PEER_SUB in a run with several nodes, else &B.url. */
const herald_url_t *nodes_peer_url(const peer_t *p);

/* nodes_cpu_start() / nodes_cpu_stop() - the CPU clock of each --pid over a
 * step (called by proc_cpu_start() / proc_cpu_stop()). nodes_cpu_stop()
 * keeps each node's share for the report and returns their sum, in percent
 * of one core over st->t_start .. st->t_end, or -1 if any cannot be read
 * (or there is no --pid). */
void nodes_cpu_start(void);
double nodes_cpu_stop(const step_t *st);

/* nodes_report() - with several nodes or PIDs: a line per node (URL, PID,
 * subscribers, CPU in each step) and the publishers' node. Nothing else. */
void nodes_report(FILE *f);

/* nodes_json() - with several nodes or PIDs: ,"publish_url":...,"nodes":[
 * {"url","pid","subscribers"}...] (each member after a comma). */
void nodes_json(FILE *f);

/* nodes_json_step() - with several PIDs: "nodes_cpu_pct":[...], for step
 * @st, followed by a comma. */
void nodes_json_step(FILE *f, const step_t *st);

#endif
