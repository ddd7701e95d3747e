/**
 * One process of the identity race (identities.test.ts): `count` allocators,
 * each a node of its own (own lease, own rate-limited client), allocating
 * overlapping label sets all at once, then releasing the ones the plan says.
 * Prints one JSON line: every allocation and release it made.
 *
 * argv: <kvstore spec> <json plan>
 *   plan = { nodes: string[], sets: string[][] (per node: label set ids to allocate), release: string[][] }
 */
import { ClusterIdentityAllocator } from "../../host/kvstore/identities.js";
import { DisciplinedKvStore } from "../../host/kvstore/disciplined-store.js";
import { openKvStore } from "../../host/kvstore/open.js";
import { LabelSet } from "../../host/identity/labels.js";

interface Plan {
  nodes: string[];
  sets: string[][];
  release: string[][];
}

const [spec, planText] = process.argv.slice(2);
const plan = JSON.parse(planText!) as Plan;
const store = await openKvStore(spec!);
const allocations: { node: string; labels: string; id: number; created: boolean }[] = [];
const released: { node: string; labels: string; deleted: boolean }[] = [];
const errors: string[] = [];

await Promise.all(
  plan.nodes.map(async (node, i) => {
    const client = new DisciplinedKvStore(store); // per agent: 20 qps, burst 20
    const lease = await client.grantLease(300);
    const allocator = new ClusterIdentityAllocator(client, { node, lease });
    await Promise.all(
      plan.sets[i]!.map(async (text) => {
        try {
          const a = await allocator.allocate(LabelSet.parse(text));
          allocations.push({ node, labels: a.labels.id, id: a.id, created: a.created });
        } catch (err) {
          errors.push(`${node} ${text}: ${(err as Error).message}`);
        }
      }),
    );
    for (const text of plan.release[i]!) {
      try {
        released.push({ node, labels: LabelSet.parse(text).id, deleted: await allocator.release(LabelSet.parse(text)) });
      } catch (err) {
        errors.push(`${node} release ${text}: ${(err as Error).message}`);
      }
    }
    lease.release(); // stop keep-alive; the lease (TTL 300 s) outlives the test
  }),
);
await store.close();
process.stdout.write(JSON.stringify({ allocations, released, errors }) + "\n");
