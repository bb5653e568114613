import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeLocation, selectRoute } from "../../firmware/src/cloud/route-selection.js";
import { Path, Role } from "../../firmware/src/protocol/signaling.js";

const at = (nodeId: number, observed: string, napt: boolean, local: string[] = [], family: 4 | 6 = 4): NodeLocation => {
  const i = observed.lastIndexOf(":");
  return { nodeId, localAddresses: local, observed: { address: observed.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(observed.slice(i + 1)) }, family, napt };
};

const cases = [
  { name: "both public", a: at(1, "198.18.0.20:7000", false), b: at(2, "198.18.0.21:7000", false), path: Path.Direct, role: Role.Initiate },
  { name: "requester behind NAPT", a: at(1, "198.18.0.30:40000", true), b: at(2, "198.18.0.21:7000", false), path: Path.Direct, role: Role.Initiate },
  { name: "peer behind NAPT", a: at(1, "198.18.0.20:7000", false), b: at(2, "198.18.0.30:40000", true), path: Path.Direct, role: Role.Await },
  { name: "both behind NAPT", a: at(1, "198.18.0.30:40000", true), b: at(2, "198.18.0.31:40000", true), path: Path.Direct, role: Role.Punch },
  { name: "family mismatch", a: at(1, "198.18.0.20:7000", false), b: at(2, "[2001:db8::2]:7000", false, [], 6), path: Path.Relay, role: Role.Initiate },
];

for (const c of cases) {
  test(`route selection: ${c.name}`, () => {
    const d = selectRoute(c.a, c.b);
    assert.equal(d.path, c.path);
    assert.equal(d.requesterRole, c.role);
    if (c.path === Path.Direct) {
      assert.deepEqual(d.peerEndpointsForRequester, [c.b.observed]);
      assert.deepEqual(d.requesterEndpointsForPeer, [c.a.observed]);
    } else {
      assert.deepEqual(d.peerEndpointsForRequester, []);
    }
  });
}

test("route selection: same site uses private addresses", () => {
  const a = at(1, "198.18.0.30:40000", true, ["192.168.2.2:7000", "[fd00::2]:7000"]);
  const b = at(2, "198.18.0.30:40001", true, ["192.168.2.3:7000"]);
  const d = selectRoute(a, b);
  assert.equal(d.path, Path.Direct);
  assert.deepEqual(d.peerEndpointsForRequester, [{ address: "192.168.2.3", port: 7000 }]);
  assert.deepEqual(d.requesterEndpointsForPeer, [{ address: "192.168.2.2", port: 7000 }]);
  assert.match(d.reason, /same site/);
});
