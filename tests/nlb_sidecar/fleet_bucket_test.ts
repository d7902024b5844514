/** The token bucket the fleet benchmark runs against, checked against what ELB documents. */
import assert from "node:assert/strict";
import { TokenBucket } from "../../bench/nlb_fleet.ts";

Deno.test("fleet bucket: 40 Describe calls at once pass, the 41st is throttled, 10 tokens come back a second", () => {
  // https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html: "if you make
  // 40 DescribeLoadBalancers requests in one second, the bucket is reduced to zero", refilled at 10 a second.
  const bucket = new TokenBucket(40, 10);
  for (let i = 0; i < 40; i++) assert.equal(bucket.take(0), true, `call ${i + 1}`);
  assert.equal(bucket.take(0), false);
  assert.equal(bucket.take(99), false, "not a whole token back after 99 ms");
  assert.equal(bucket.take(100), true, "one token a tenth of a second");
  // Full again after 4 s, never fuller: an idle minute still allows only 40 at once.
  let passed = 0;
  for (let i = 0; i < 100; i++) if (bucket.take(60_000)) passed++;
  assert.equal(passed, 40);
});
