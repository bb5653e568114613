export { CloudStore, type CloudStoreConfig, type GeneralNodeOptions } from "./cloud-store.js";
export { StoreError, type StoreErrorCode } from "./errors.js";
export type { LocationRecord, LocationReport } from "./locations.js";
export type { NodeKind, NodeRecord } from "./nodes.js";
export type { PoolConfig } from "./pool.js";
export type { IssuedToken } from "./tokens.js";
export type { RouteRecord } from "./routes.js";
