// SPDX-License-Identifier: GPL-2.0
/*
 * mcpwarden command line. Options are declared in tables that fill a
 * struct; main() only dispatches (xdp-tools params.h style).
 *
 *   mcpwarden run --policy FILE [--mode monitor|enforce] [--events FILE|-]
 *                 [--cgroup-root PATH] [--state-dir DIR] [--node-name NAME]
 *   mcpwarden check-policy FILE
 *   mcpwarden status  [--state-dir DIR]
 *   mcpwarden events  [--state-dir DIR] [--follow]
 *   mcpwarden version
 *
 * Exit status: 0 clean, 1 runtime failure, 2 bad usage or invalid policy,
 * 3 missing kernel feature or privilege.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grp.h>

#include "agent.h"
#include "attest.h"
#include "ctl.h"
#include "log.h"
#include "policy.h"

#define DEFAULT_STATE_DIR "/run/mcpwarden"

enum opt_type {
	OPT_STRING,
	OPT_FLAG,
	OPT_OUTPUT,		/* repeatable --output */
};

struct opt_def {
	const char *name;
	enum opt_type type;
	size_t offset;		/* into struct cli */
	const char *arg;	/* metavar for help */
	const char *help;
};

struct cli {
	struct agent_opts run;
	const char *state_dir;
	bool follow;
	bool help;
	bool pin, no_pin;
	const char *attest_group;
	const char *socket;
};

#define O(field) offsetof(struct cli, field)

static const struct opt_def run_opts[] = {
	{ "policy", OPT_STRING, O(run.policy_path), "FILE", "policy file (default: embedded default policy)" },
	{ "mode", OPT_STRING, O(run.mode), "MODE", "monitor or enforce (overrides the policy)" },
	{ "events", OPT_STRING, O(run.events), "FILE", "append events to FILE, or - for stdout (default)" },
	{ "output", OPT_OUTPUT, 0, "SPEC", "an event sink: jsonl|falco|ocsf:FILE|-, syslog:tcp://H:P (repeatable)" },
	{ "request-events", OPT_STRING, O(run.request_events), "WHICH", "all (default): an event per request; judged: none for requests the kernel passed on a judged connection" },
	{ "scheduling", OPT_STRING, O(run.scheduling), "POLICY", "realtime (default): the event loop runs SCHED_FIFO so held requests wait for no other task; normal: a plain task" },
	{ "max-connections", OPT_STRING, O(run.max_connections), "N", "protected connections the kernel tracks at once (default 65536); one more cannot be judged: the policy's fail decides" },
	{ "request-timeout", OPT_STRING, O(run.request_timeout), "SECONDS", "a request must arrive whole this soon after its first byte (default 30), or its connection is ended as malformed" },
	{ "metrics", OPT_STRING, O(run.metrics), "ADDR:PORT", "serve Prometheus /metrics and /healthz" },
	{ "cluster", OPT_STRING, O(run.cluster), "URL", "fleet mode: share state through NATS JetStream (nats:// or tls://)" },
	{ "cluster-creds", OPT_STRING, O(run.cluster_creds), "FILE", "NATS credentials" },
	{ "cluster-ca", OPT_STRING, O(run.cluster_ca), "FILE", "CA bundle for the NATS server" },
	{ "cluster-cert", OPT_STRING, O(run.cluster_cert), "FILE", "client certificate (mutual TLS)" },
	{ "cluster-key", OPT_STRING, O(run.cluster_key), "FILE", "client key (mutual TLS)" },
	{ "attest-socket", OPT_STRING, O(run.attest_socket), "PATH", "attestation API socket (default STATE_DIR/attest.sock)" },
	{ "attest-group", OPT_STRING, O(attest_group), "GROUP", "group allowed to ask the attestation API (default: root only)" },
	{ "cgroup-root", OPT_STRING, O(run.cgroup_root), "PATH", "cgroup v2 subtree to attach to and judge" },
	{ "state-dir", OPT_STRING, O(run.state_dir), "DIR", "control socket directory (default " DEFAULT_STATE_DIR ")" },
	{ "node-name", OPT_STRING, O(run.node_name), "NAME", "node name in events (default: hostname)" },
	{ "pods-file", OPT_STRING, O(run.pods_file), "FILE", "pod metadata (PodList JSON) instead of the API server" },
	{ "kube-api", OPT_STRING, O(run.kube_api), "URL", "Kubernetes API server (default: in-cluster)" },
	{ "kube-token", OPT_STRING, O(run.kube_token), "FILE", "service-account token for the pod watch" },
	{ "kube-ca", OPT_STRING, O(run.kube_ca), "FILE", "CA bundle of the API server" },
	{ "no-kube", OPT_FLAG, O(run.no_kube), NULL, "do not watch pods even inside a cluster" },
	{ "log-level", OPT_STRING, O(run.log_level), "LEVEL", "error, warn, info (default) or debug" },
	{ "pin", OPT_FLAG, O(pin), NULL, "pin the kernel side so it outlives the daemon (default in enforce mode)" },
	{ "no-pin", OPT_FLAG, O(no_pin), NULL, "never pin: everything detaches when the daemon stops" },
	{ "cleanup", OPT_FLAG, O(run.cleanup), NULL, "remove what an enforcing agent left pinned, then exit" },
	{ "help", OPT_FLAG, O(help), NULL, "show this help" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct opt_def state_opts[] = {
	{ "state-dir", OPT_STRING, O(state_dir), "DIR", "control socket directory (default " DEFAULT_STATE_DIR ")" },
	{ "follow", OPT_FLAG, O(follow), NULL, "keep streaming new events" },
	{ "help", OPT_FLAG, O(help), NULL, "show this help" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct opt_def who_opts[] = {
	{ "socket", OPT_STRING, O(socket), "PATH", "attestation socket (default STATE_DIR/attest.sock)" },
	{ "state-dir", OPT_STRING, O(state_dir), "DIR", "the agent's state directory (default " DEFAULT_STATE_DIR ")" },
	{ "help", OPT_FLAG, O(help), NULL, "show this help" },
	{ NULL, 0, 0, NULL, NULL },
};

static const struct opt_def no_opts[] = {
	{ "help", OPT_FLAG, O(help), NULL, "show this help" },
	{ NULL, 0, 0, NULL, NULL },
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mcpwarden run [--policy FILE] [--mode monitor|enforce] [--events FILE|-]\n"
		"                     [--cgroup-root PATH] [--state-dir DIR] [--node-name NAME]\n"
		"       mcpwarden check-policy FILE\n"
		"       mcpwarden status [--state-dir DIR]\n"
		"       mcpwarden events [--state-dir DIR] [--follow]\n"
		"       mcpwarden who SRC_IP:PORT DST_IP:PORT [--socket PATH]\n"
		"       mcpwarden version\n");
}

static void opts_help(const char *cmd, const struct opt_def *defs)
{
	const struct opt_def *d;

	printf("mcpwarden %s options:\n", cmd);
	for (d = defs; d->name; d++)
		printf("  --%s%s%-*s %s\n", d->name, d->arg ? " " : "", d->arg ? 14 - (int)strlen(d->name) : 15 - (int)strlen(d->name),
		       d->arg ? d->arg : "", d->help);
}

/* Parses --name VALUE, --name=VALUE and flags; positional args stay. */
static int parse_opts(int argc, char **argv, const struct opt_def *defs, struct cli *cli,
		      char **pos, int *n_pos)
{
	int i;

	*n_pos = 0;
	for (i = 0; i < argc; i++) {
		const struct opt_def *d;
		const char *arg = argv[i], *val = NULL, *eq;
		size_t nlen;

		if (strncmp(arg, "--", 2) != 0) {
			pos[(*n_pos)++] = argv[i];
			continue;
		}
		arg += 2;
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		for (d = defs; d->name; d++)
			if (strlen(d->name) == nlen && strncmp(d->name, arg, nlen) == 0)
				break;
		if (!d->name) {
			fprintf(stderr, "mcpwarden: unknown option --%.*s\n", (int)nlen, arg);
			return -EINVAL;
		}
		if (d->type == OPT_FLAG) {
			if (eq) {
				fprintf(stderr, "mcpwarden: --%s takes no value\n", d->name);
				return -EINVAL;
			}
			*(bool *)((char *)cli + d->offset) = true;
			continue;
		}
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		if (!val || !*val) {
			fprintf(stderr, "mcpwarden: --%s needs a value (%s)\n", d->name, d->arg);
			return -EINVAL;
		}
		if (d->type == OPT_OUTPUT) {
			if (cli->run.n_outputs == sizeof(cli->run.outputs) / sizeof(cli->run.outputs[0])) {
				fprintf(stderr, "mcpwarden: at most %zu --output sinks\n",
					cli->run.n_outputs);
				return -EINVAL;
			}
			cli->run.outputs[cli->run.n_outputs++] = val;
			continue;
		}
		*(const char **)((char *)cli + d->offset) = val;
	}
	return 0;
}

static int cmd_check_policy(const char *path)
{
	struct policy_error err = {};
	struct policy *p = NULL;
	char msg[600];

	if (policy__load_file(path, &p, &err)) {
		policy_error__format(&err, msg, sizeof(msg));
		fprintf(stderr, "%s\n", msg);
		return 2;
	}
	printf("%s: ok (mode %s, %zu servers, %zu clients, sha256 %s)\n", path,
	       policy_mode__name(p->mode), p->n_servers, p->n_clients, p->digest);
	policy__free(p);
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {};
	char *pos[16];
	int n_pos = 0;
	const char *cmd;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (argc - 2 > 16) {
		fprintf(stderr, "mcpwarden: too many arguments\n");
		return 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("mcpwarden %s (%s)\n", MCPWARDEN_VERSION, MCPWARDEN_GIT);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "run") == 0) {
		enum log_level lvl;

		if (parse_opts(argc - 2, argv + 2, run_opts, &cli, pos, &n_pos))
			return 2;
		if (cli.help) {
			opts_help("run", run_opts);
			return 0;
		}
		if (n_pos) {
			fprintf(stderr, "mcpwarden run: unexpected argument %s\n", pos[0]);
			return 2;
		}
		if (cli.run.log_level) {
			if (log__parse_level(cli.run.log_level, &lvl)) {
				fprintf(stderr, "mcpwarden: --log-level must be error, warn, info or debug\n");
				return 2;
			}
			log__set_level(lvl);
		}
		if (!cli.run.state_dir)
			cli.run.state_dir = DEFAULT_STATE_DIR;
		if (cli.pin && cli.no_pin) {
			fprintf(stderr, "mcpwarden: --pin and --no-pin contradict each other\n");
			return 2;
		}
		cli.run.pin = cli.pin ? 1 : cli.no_pin ? 0 : -1;
		cli.run.attest_gid = -1;
		if (cli.attest_group) {
			struct group *g = getgrnam(cli.attest_group);

			if (!g) {
				fprintf(stderr, "mcpwarden: --attest-group: no group named %s\n",
					cli.attest_group);
				return 2;
			}
			cli.run.attest_gid = g->gr_gid;
		}
		return agent__run(&cli.run);
	}
	if (strcmp(cmd, "check-policy") == 0) {
		if (parse_opts(argc - 2, argv + 2, no_opts, &cli, pos, &n_pos))
			return 2;
		if (cli.help || n_pos != 1) {
			fprintf(cli.help ? stdout : stderr, "usage: mcpwarden check-policy FILE\n");
			return cli.help ? 0 : 2;
		}
		return cmd_check_policy(pos[0]);
	}
	if (strcmp(cmd, "who") == 0) {
		char path[256];

		if (parse_opts(argc - 2, argv + 2, who_opts, &cli, pos, &n_pos))
			return 2;
		if (cli.help || n_pos != 2) {
			fprintf(cli.help ? stdout : stderr,
				"usage: mcpwarden who SRC_IP:PORT DST_IP:PORT [--socket PATH] [--state-dir DIR]\n"
				"  SRC is the client end, DST the server end of a TCP connection.\n");
			return cli.help ? 0 : 2;
		}
		snprintf(path, sizeof(path), "%s/%s", cli.state_dir ? cli.state_dir : DEFAULT_STATE_DIR,
			 ATTEST_SOCKET_NAME);
		return attest__cli_who(cli.socket ? cli.socket : path, pos[0], pos[1]);
	}
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "events") == 0) {
		if (parse_opts(argc - 2, argv + 2, state_opts, &cli, pos, &n_pos))
			return 2;
		if (cli.help) {
			opts_help(cmd, state_opts);
			return 0;
		}
		if (n_pos) {
			fprintf(stderr, "mcpwarden %s: unexpected argument %s\n", cmd, pos[0]);
			return 2;
		}
		if (strcmp(cmd, "status") == 0 && cli.follow) {
			fprintf(stderr, "mcpwarden status: --follow is for `events`\n");
			return 2;
		}
		return ctl__client(cli.state_dir ? cli.state_dir : DEFAULT_STATE_DIR, cmd, cli.follow);
	}
	fprintf(stderr, "mcpwarden: unknown command %s\n", cmd);
	usage(stderr);
	return 2;
}
