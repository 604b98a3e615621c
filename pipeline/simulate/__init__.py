"""A seeded telemetry simulator with ground truth: the fleet's incident scenarios and the shop.

`build(name, seed)` returns a `Simulation` (topology, silences, true incidents and the
effects on each service), the same every time for the same arguments; `steps` yields its
telemetry, `write` puts `telemetry.jsonl` (replayable by `quietpager replay`), `config.yaml`
(valid for `load_config`) and `truth.json` in a folder (`quietpager simulate`).

Scenarios (`SCENARIOS`):

- The fleet (`FLEET_SCENARIOS`, what `bench denoise` scores): 44 services in layers, six edge
  services calling 4-6 of the first 16 mid-tier ones, 24 mid-tier services calling 0-2 later
  mid-tier ones, 1-2 of 13 data stores and the shared `config-kv`; the graph is drawn from
  `Random(seed)`. Steps of 30 s from Friday 2026-11-27 00:00 UTC, incidents after a 2 h
  warm-up. `cascade`: three faults on data stores with two callers or more, 15-40 min each,
  an hour apart (10 h). `stopped`: `shipping` sends nothing for 30 min (5 h). `blips`: eight
  latency spikes of 20-100 s, 20 min apart (6 h). `flapping`: `recommend`'s latency 1.4-2x
  for 1-3 points (one time in five 4-8), then 1-6 healthy points, for 3 h (6 h). `storm`:
  `config-kv`, which every mid-tier service calls, fails for 30 min (5 h). `maintenance`: a
  40 min fault on `ledger-db` inside a silence from 10 min before to 15 min after (5 h).
  `overlap`: two faults with no caller in common, 10 min apart (5 h). `all`: these one after
  another, three hours apart, a blip between each (two days).
- `shop`: the demo's shop (`Scenario`): eight services, 40 min of 10 s steps from
  2026-11-26 09:00 UTC, one fault on `payments-db` at 20 min for 10 min and a 20 s blip on
  `catalog` at 13 min 20 s. The seed draws the profiles and noise (the demo uses seed 7).

Distributions, per service (the fleet / the shop):

- Profile, uniform: latency 0.02-0.22 s / 0.05-0.20 s; traffic 20-520 / 50-450 per second;
  error ratio 0.001-0.005 / 0.002-0.006; saturation 0.2-0.4 / 0.3-0.5.
- Load: a ±40% daily curve (lowest at 02:00 UTC) times a ±15% weekly one peaking midweek,
  in traffic, saturation and a tenth of it in latency / a ±10% daily swing in traffic only.
- Noise each step: latency x exp(N(0, 0.05)) / x (1 + N(0, 0.05)); traffic and saturation
  x (1 + N(0, 0.03)); error ratio x (1 + N(0, 0.2)), at least 0; saturation within [0, 1].
- Deploys (the fleet): exponential gaps of a day on average, each shifting latency and
  saturation by a uniform ±8% from then on.
- Faults spread up the call graph by hops (`hops_from`). The fleet: the root saturates
  (0.97 + N(0, 0.005)) at onset, its latency x5 and errors 20% follow 45-75 s later; a
  caller at hop h follows 60 s plus one 30-90 s delay per hop (drawn per incident) later,
  latency x(1 + 3/h), errors 12%/h (x (1 + N(0, 0.1))); failing entry points lose 30% of
  their traffic and their callees 15%. The shop: the root at once with latency x6, errors
  25% and saturation 0.97, each hop 30 s later at latency x3 and errors 15%; failing entry
  points lose 40% of their traffic.

With `logs=True` every service also writes log records (DESIGN.md shape) beside its points
from its own rng, so the points stay the same: a heartbeat and 0-2 routine info and debug
lines each step, a slow-request warning one step in twenty (one in five more on a slow
service with no failure), 2-4 error lines about itself on a failing root and 1-3 about the
failing callee on the others.
"""

from pipeline.simulate.faults import Blip, Fault
from pipeline.simulate.output import (
    agent_messages,
    config_data,
    generate,
    messages,
    steps,
    truth_data,
    write,
)
from pipeline.simulate.profiles import ERRORS, LATENCY, SATURATION, TRAFFIC
from pipeline.simulate.scenarios import (
    DATA,
    EDGE,
    FLEET_SCENARIOS,
    MID,
    SCENARIOS,
    SHARED,
    SHOP_TOPOLOGY,
    START,
    WARMUP_S,
    Scenario,
    affected_services,
    build,
    layered_topology,
    shop,
)
from pipeline.simulate.timeline import PAGEABLE, Simulation, TrueIncident, hops_from

__all__ = [
    "DATA",
    "EDGE",
    "ERRORS",
    "FLEET_SCENARIOS",
    "LATENCY",
    "MID",
    "PAGEABLE",
    "SATURATION",
    "SCENARIOS",
    "SHARED",
    "SHOP_TOPOLOGY",
    "START",
    "TRAFFIC",
    "WARMUP_S",
    "Blip",
    "Fault",
    "Scenario",
    "Simulation",
    "TrueIncident",
    "affected_services",
    "agent_messages",
    "build",
    "config_data",
    "generate",
    "hops_from",
    "layered_topology",
    "messages",
    "shop",
    "steps",
    "truth_data",
    "write",
]
