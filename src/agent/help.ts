// discovery-agent --help: the manual page (flags, environment, signals, exit status).
import {
  DEFAULT_WEIGHT,
  MAX_INSTANCE_ID_LENGTH,
  MAX_METADATA,
  MAX_PORT,
  MAX_SERVICE_NAME_LENGTH,
  MAX_TAG_LENGTH,
  MAX_TAGS,
  MAX_TTL_SECONDS,
  MAX_WEIGHT,
  MIN_PORT,
} from '../rules.ts';

export const HELP = `NAME
    discovery-agent - register any process with the discovery gateway, keep it
    registered while it is healthy, and deregister it before it stops

SYNOPSIS
    discovery-agent run --gateway URL --service NAME --address ADDR --port PORT
        [--id ID] [--ttl S] [--tag T]... [--meta K=V]... [--weight W]
        [--check URL] [--grace S] [--drain S] [--token T] [--ca-file F]
        [-- CMD ARGS...]
    discovery-agent --help | --version

DESCRIPTION
    With "-- CMD ARGS...", the agent starts CMD with the agent's own stdin,
    stdout and stderr, and registers the instance with the gateway
    (PUT /services/NAME/instances/ID) once --check answers 2xx, or at once
    without --check. It then sends heartbeats at the interval the gateway
    answers (else every third of the TTL), registers again when the gateway
    has forgotten the instance (404, say after a restart of its store), and
    retries network errors and 5xx answers with backoff (0.5 s doubling to
    5 s) for as long as it runs: the gateway being away never stops CMD.

    With --check, the URL is polled every second; a failure is a non-2xx
    answer or none within 2 s. Three failures in a row set the instance's
    status to "down"; the next success sets it back to "up".

    On SIGTERM or SIGINT the agent sets the status to "draining", deletes
    the instance, waits --drain seconds for clients to move away, and only
    then sends the same signal to CMD; CMD gets SIGKILL if it is still
    running --grace seconds later. If the instance was never registered,
    CMD gets the signal at once. A second signal skips what is left of the
    drain wait. SIGHUP, SIGUSR1 and SIGUSR2 are passed on to CMD as they are.
    When CMD exits by itself, the agent deletes the instance and exits
    with CMD's exit code.

    Without CMD (a sidecar next to the process it announces), the agent
    keeps the registration until SIGTERM or SIGINT, then deletes it and
    exits 0.

    CMD runs in a process group of its own, and every signal the agent
    passes on goes to that whole group: a shell CMD's children get it too.
    When CMD has exited, whatever is left of its group gets SIGKILL, so no
    child of CMD outlives it. Ctrl-C in a terminal reaches the agent only;
    CMD gets SIGINT once the agent has drained.

    Run the agent directly (as the container's entry point, from systemd,
    or from a shell with exec), not through npx or an npm script: those
    put a shell in between that does not pass SIGTERM on, so the agent
    could neither drain nor deregister.

    As a container's PID 1 the agent cannot reap orphaned processes (Node
    does not wait for children it did not start). Run it under an init:
    the gateway's image has tini as its entry point; elsewhere use
    "docker run --init", "init: true" in compose, or tini/dumb-init in
    your own image's ENTRYPOINT.

    The agent writes one line on stderr per change of state (registered,
    re-registered, status, gateway unreachable, deregistered). It never
    writes the token.

OPTIONS
    --gateway URL    the gateway's base URL, e.g. http://gateway:8080
                     (default: $DISCOVERY_GATEWAY)
    --service NAME   service name: 1-${MAX_SERVICE_NAME_LENGTH} of a-z 0-9 . _ -, starting and
                     ending with a letter or digit
    --address ADDR   the address clients should connect to: IPv4, IPv6
                     (without brackets) or DNS host name
    --port PORT      the port clients should connect to, ${MIN_PORT}-${MAX_PORT}
    --id ID          instance id, 1-${MAX_INSTANCE_ID_LENGTH} of A-Z a-z 0-9 . _ : -
                     (default: ADDR:PORT)
    --ttl S          seconds the gateway keeps the instance without a
                     heartbeat, 0-${MAX_TTL_SECONDS}; 0 = until deleted, and heartbeats
                     are sent only to change the status (default: 10)
    --tag T          a tag, 1-${MAX_TAG_LENGTH} characters; repeat for more (at most ${MAX_TAGS})
    --meta K=V       a metadata entry; repeat for more (at most ${MAX_METADATA})
    --weight W       weight for load balancing, 0-${MAX_WEIGHT} (gateway default ${DEFAULT_WEIGHT})
    --check URL      HTTP health check of CMD: register only once it answers
                     2xx; polled every second
    --grace S        seconds CMD has to exit after the signal before it gets
                     SIGKILL (default: 10)
    --drain S        seconds between the deregistration and the signal to
                     CMD, for clients to stop sending (default: 0)
    --token T        bearer token for the gateway (default: $DISCOVERY_TOKEN)
    --ca-file F      PEM file of the CA that signed the gateway's HTTPS
                     certificate (a private CA), trusted instead of the default CAs
    -h, --help       show this text
    --version        show the version

ENVIRONMENT
    DISCOVERY_GATEWAY   the gateway URL when --gateway is not given
    DISCOVERY_TOKEN     the bearer token when --token is not given; prefer
                        it to --token, which other users may see in ps
    A flag wins over its variable.

EXIT STATUS
    With CMD: CMD's exit code, or 128 + the signal's number when a signal
    ended it (143 for SIGTERM, 137 for SIGKILL).
    Without CMD: 0 after SIGTERM or SIGINT.
    1    the gateway refused the registration (400, 401 or 403); CMD, if
         any, was stopped as on SIGTERM
    2    a bad or missing flag; nothing was registered or started
    127  CMD could not be started

EXAMPLES
    Wrap a service, register it once its health check answers, give it
    5 s to drain:
        discovery-agent run --gateway http://gateway:8080 \\
            --service payments --address 10.0.0.7 --port 8080 \\
            --tag http --meta version=2.3.1 --check http://127.0.0.1:8080/health \\
            --drain 5 -- java -jar payments.jar

    Sidecar without CMD, announcing a neighbour container:
        DISCOVERY_GATEWAY=http://gateway:8080 DISCOVERY_TOKEN=... \\
        discovery-agent run --service search --address "$POD_IP" --port 9200 \\
            --check http://127.0.0.1:9200/_cluster/health

    A container's entry point (exec form, so the agent gets SIGTERM, under
    tini so that orphans are reaped):
        ENTRYPOINT ["tini", "--", "discovery-agent", "run", "--service", "web",
                    "--address", "web-1", "--port", "3000", "--", "node", "server.js"]
`;
