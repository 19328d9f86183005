// 1. Cached discovery: GET /services/{name} (10 instances with tags and
// metadata) at 50 connections, driven by wrk, next to a plain fastify route
// answering the same bytes and headers and to etcd's own JSON gateway (POST
// /v3/kv/range) for the same prefix; also `?tag=` filtered and If-None-Match
// (304). Beside every ratio, the generator's ceiling (ceiling.ts); and an
// outside check: plain wrk, no Lua, as someone measuring from outside would,
// which must agree with the main ratio. Last, the same comparison made robust to
// the host's noise: both servers on one core at once (shared-core.ts).
import { instanceId, instanceInput, keys, registerByBatch } from '../lib/fixtures.ts';
import { statSync } from 'node:fs';
import { bracketed, compare, roundRatio, type Contender } from '../lib/load.ts';
import { startTrivialRoute } from '../lib/ceiling.ts';
import { SERVER_CORE, sharedCoreRounds, type SharedCoreRound } from '../lib/shared-core.ts';
import { captureAnswer, startBaseline, startGateway, type Child } from '../lib/procs.ts';
import { guarded, latencyRow, ratioRow, type Row, type Scenario } from '../lib/table.ts';
import { checkedLoad, plainWrk, type WrkOptions, type WrkStats } from '../lib/wrk.ts';

const SERVICE = 'payments';
const CONNECTIONS = 50;
/** The outside check's runs: `wrk -t1 -c50 -d4s`, as measured by hand. */
const OUTSIDE_S = 4;
/** The outside check agrees when its ratio is within this share of the main one. */
const AGREEMENT = 0.05;
/** The shared-core comparison: rounds of this many seconds. */
const SHARED_S = 3;
/**
 * The shared-core figure's process pairs: the pair measured above, then fresh ones. One
 * process can answer for 10–25% more or less CPU than a fresh copy of itself, for its
 * whole life (BENCHMARKS.md), so one pair cannot settle a question of 10%.
 */
const SHARED_PAIRS = 3;
/** The pause before each measured run: what the run before left behind is done by then. */
const SETTLE_MS = 1000;

const b64 = (s: string) => Buffer.from(s).toString('base64');

export const discovery: Scenario = {
  name: 'discovery',
  title: '1. Cached discovery (GET /services/{name}, 10 instances, 50 connections, wrk)',
  async run(ctx) {
    const durationS = ctx.durationS ?? (ctx.quick ? 5 : 10);
    const warmS = ctx.quick ? 1 : 3;
    const children: Child[] = [];
    try {
      // LOG_LEVEL=warn and every other setting at its default, as issue 31 measured it by hand.
      // The outside check loads this same process: it checks the method, and two processes
      // of one build can differ by more than the 5% it allows (BENCHMARKS.md).
      const gw = await startGateway({ etcd: ctx.etcd, cpuProfDir: ctx.cpuProfDir, env: { REQUEST_LOG: 'true' } });
      children.push(gw);
      await registerByBatch(
        gw.url,
        Array.from({ length: 10 }, (_, i) => ({ service: SERVICE, id: instanceId(i), input: instanceInput(i, 0) })),
      );
      const path = `/services/${SERVICE}`;
      const answer = await captureAnswer(`${gw.url}${path}`, {}, 'discovery');
      const etag = answer.headers.etag!;
      const base = await startBaseline(answer);
      children.push(base);
      const trivial = await startTrivialRoute(answer);
      children.push(trivial);

      const prefix = keys.service(SERVICE);
      const rangeEnd = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
      const load = (url: string, args: WrkOptions['args'] = {}) =>
        checkedLoad({ url, script: 'request.lua', args, connections: CONNECTIONS, threads: ctx.wrkThreads }, warmS, durationS);
      const outside = (url: string): Contender<WrkStats> => {
        const plain = (seconds: number) => plainWrk(url, { threads: 1, connections: CONNECTIONS, durationS: seconds });
        return { warm: () => plain(warmS), run: () => plain(OUTSIDE_S) };
      };
      // A round: each gateway run between two runs of its same-bytes route (their mean is
      // the floor of that round, so a steady drift in the machine's load cancels), and the
      // etcd range run (etcd's CPU outlives its load) followed only by the ceiling, which
      // no ratio is taken from. The route's two runs are the same contender run twice.
      const fastifyRun = load(`${base.url}${path}`);
      const outsideFastifyRun = outside(`${base.url}${path}`);
      const r = await compare(
        ctx.rounds,
        {
          fastify: fastifyRun,
          gateway: load(`${gw.url}${path}`),
          tagged: load(`${gw.url}${path}?tag=canary`),
          notModified: load(`${gw.url}${path}`, { header: `If-None-Match:${etag}`, expect: 304 }),
          fastifyAfter: { run: fastifyRun.run },
          outsideFastify: outsideFastifyRun,
          outsideGateway: outside(`${gw.url}${path}`),
          outsideFastifyAfter: { run: outsideFastifyRun.run },
          outsideCeiling: outside(`${trivial.url}${path}`),
          etcd: load(`${ctx.etcd}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(prefix), range_end: b64(rangeEnd) }) }),
          ceiling: load(`${trivial.url}${path}`),
        },
        ctx.log,
        SETTLE_MS,
      );
      const fastify = bracketed(r.fastify, r.fastifyAfter);
      const outsideFastify = bracketed(r.outsideFastify, r.outsideFastifyAfter);
      for (const [what, s] of Object.entries(r)) {
        if (s.errors) ctx.note(`${what}: ${s.errors} failed or unexpected answers`);
      }
      ctx.note(
        `answer body ${statSync(answer.bodyFile).size} bytes; the fastify route repeats its content type, ETag and X-Registry-Revision as captured from the gateway; ` +
          `wrk, ${CONNECTIONS} connections, ${ctx.wrkThreads} thread(s), no Lua per answer (statuses verified by a checking pass, then bytes per answer); ` +
          `${ctx.rounds} round(s) of ${durationS} s, contenders interleaved (${SETTLE_MS / 1000} s apart), the gateway's runs between two of the fastify route's (their mean is the round's floor), ` +
          `median of the ratios within each round; ${warmS} s warm-up (the checking pass) of each`,
      );
      ctx.note(
        `wrk ceiling: the same wrk run against haproxy (one thread) answering the same bytes and headers; a ratio whose faster side is within 10% of it is INVALID. ` +
          `wrk used ${Math.round((r.gateway.wrkCpuS / durationS) * 100)}% of a core against the gateway, ${Math.round((r.ceiling.wrkCpuS / durationS) * 100)}% against haproxy`,
      );
      const main = roundRatio(r.gateway, fastify);
      const outsideRow = ratioRow(
        `outside check: plain wrk -t1 -c${CONNECTIONS} -d${OUTSIDE_S}s`,
        r.outsideGateway.rps,
        outsideFastify.rps,
        'fastify',
        'req/s',
        undefined,
        roundRatio(r.outsideGateway, outsideFastify),
      );
      const agreement = (outsideRow.ratio ?? NaN) / main;
      ctx.note(
        `outside check: plain wrk (no script) on the same two processes (the gateway at LOG_LEVEL=warn, every other setting at its default), ${ctx.rounds} round(s) of ${OUTSIDE_S} s, the gateway's run between two of the route's, median; ` +
          `its ratio is ${agreement.toFixed(3)}× the main one`,
      );
      // The profiler would weigh on the gateway's side only.
      const pairs = ctx.cpuProfDir ? 0 : ctx.quick ? 1 : SHARED_PAIRS;
      // Odd, so each pair has a middle round.
      const perPair = ctx.quick ? 3 : ctx.rounds | 1;
      const shared: SharedCoreRound[][] = [];
      for (let p = 0; p < pairs; p++) {
        try {
          shared.push(await sharedCorePair(p === 0 ? [gw, base] : undefined));
        } catch (err) {
          // A fresh pair that fails costs its figure, not the scenario's measured above.
          if (p === 0) throw err;
          ctx.note(`sharing one core: fresh pair ${p + 1} failed: ${(err as Error).message}`);
        }
      }
      /** One pair's rounds: the pair given, or a fresh one, warmed first and stopped after. */
      async function sharedCorePair(pair: [Child, Child] | undefined): Promise<SharedCoreRound[]> {
        const started = (c: Child) => (children.push(c), c);
        const [g, b] = pair ?? [started(await startGateway({ etcd: ctx.etcd })), started(await startBaseline(answer))];
        try {
          if (!pair) for (const c of [g, b]) await plainWrk(`${c.url}${path}`, { threads: 1, connections: CONNECTIONS, durationS: warmS });
          const rounds = { rounds: perPair, durationS: SHARED_S, connections: CONNECTIONS };
          return await sharedCoreRounds({ pid: g.pid, url: `${g.url}${path}` }, { pid: b.pid, url: `${b.url}${path}` }, rounds);
        } finally {
          if (!pair) await Promise.all([g.stop(), b.stop()]);
        }
      }
      const middle = <T>(xs: T[], by: (x: T) => number): T | undefined => [...xs].sort((x, y) => by(x) - by(y))[Math.floor(xs.length / 2)];
      // A pair's median round, then the median pair: processes differ more than rounds do.
      const pairMedians = shared.map((rounds) => middle(rounds, (x) => x.ratio)!);
      const sharedMedian = middle(pairMedians, (x) => x.ratio);
      const sharedRounds = shared.flat();
      if (sharedMedian)
        ctx.note(
          `sharing one core: the gateway and the fastify route pinned to core ${SERVER_CORE} together, each under its own plain wrk at once, ` +
            `${shared.length} pair(s) of processes (the first the one measured above, then fresh ones, warmed ${warmS} s) × ${perPair} rounds of ${SHARED_S} s, the median pair's median round; ` +
            `CPU per answer from schedstat; the gateway's answers per CPU second over the route's, per pair: ` +
            shared.map((pair) => pair.map((x) => x.ratio.toFixed(2)).join(', ')).join(' | ') +
            (sharedRounds.some((x) => x.failed) ? ` (failed answers: ${sharedRounds.map((x) => x.failed).join(', ')})` : ''),
        );
      else ctx.note('sharing one core: not measured while profiling (the profiler weighs on the gateway only)');
      const rows: Row[] = [
        guarded(ratioRow('GET /services/{name}', r.gateway.rps, fastify.rps, 'fastify', 'req/s', 0.85, main), r.ceiling.rps),
        latencyRow('  p99 latency at saturation', r.gateway.p99, fastify.p99, 'fastify', 1.2),
        {
          metric: '  p50 / p90 latency',
          ours: r.gateway.p50,
          baseline: fastify.p50,
          against: 'fastify',
          unit: 'ms',
          target: `p90 ${r.gateway.p90.toFixed(2)} vs ${fastify.p90.toFixed(2)} ms`,
        },
        guarded(
          { ...ratioRow('  vs etcd JSON gateway range', r.gateway.rps, r.etcd.rps, 'etcd /v3/kv/range', 'req/s'), target: 'report' },
          r.ceiling.rps,
        ),
        guarded(
          ratioRow('GET ?tag=canary (5 of 10)', r.tagged.rps, fastify.rps, 'fastify', 'req/s', 0.8, roundRatio(r.tagged, fastify)),
          r.ceiling.rps,
        ),
        latencyRow('  p99 latency at saturation', r.tagged.p99, fastify.p99, 'fastify'),
        guarded(
          ratioRow(
            'GET with If-None-Match (304)',
            r.notModified.rps,
            fastify.rps,
            'fastify 200',
            'req/s',
            0.9,
            roundRatio(r.notModified, fastify),
          ),
          r.ceiling.rps,
        ),
        latencyRow('  p99 latency at saturation', r.notModified.p99, fastify.p99, 'fastify'),
        { metric: 'etcd range p50 / p99 at saturation', ours: r.etcd.p50, baseline: r.etcd.p99, against: 'p99', unit: 'ms' },
        ratioRow('wrk ceiling / the fastify floor', r.ceiling.rps, fastify.rps, 'fastify', 'req/s', 1.3, roundRatio(r.ceiling, fastify)),
        guarded(
          { ...outsideRow, target: `within ${AGREEMENT * 100}% of ${main.toFixed(2)}×`, pass: Math.abs(agreement - 1) <= AGREEMENT },
          r.outsideCeiling.rps,
        ),
        ...(sharedMedian
          ? [
              {
                ...ratioRow(
                  'answers per CPU ms, both on one core at once',
                  1000 / sharedMedian.aUs,
                  1000 / sharedMedian.bUs,
                  'fastify',
                  'answers',
                  undefined,
                  sharedMedian.ratio,
                ),
                target: 'report',
              },
            ]
          : []),
      ];
      return rows;
    } finally {
      await Promise.all(children.map((c) => c.stop()));
    }
  },
};
