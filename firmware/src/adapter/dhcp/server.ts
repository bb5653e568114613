// The adapter's DHCP server: hands each registered general node its reserved
// virtual IPv4 address on the LAN interface, and nothing to anyone else.
//
// Counters (all under "dhcp."): rx.datagrams, rx.<message type>,
// drop.<reason>, request.<state>, ack.<state>, nak.<state>, ack.inform,
// tx.offer, tx.ack, tx.nak, tx.error, lease.<event>, reply.option_omitted,
// lease_file.write_error, socket_error.
import net from "node:net";
import { Counters } from "../../util/counters.js";
import { logger, RateLimitedLog, type Logger } from "../../util/log.js";
import { validateServerOptions, type ServerConfig } from "./config.js";
import { messageTypeName } from "./constants.js";
import { loadLeaseTable, type LeaseTable } from "./lease-table.js";
import { normalizeMac } from "./mac.js";
import { decodeMessage, type DhcpMessage } from "./message.js";
import { buildReply, type ReplyKind } from "./reply.js";
import { checkRequest, decide, type Decision, type NakReason, type RequestState } from "./request-handler.js";
import { DeviceTransport, type DhcpDatagram, type DhcpTransport } from "./transport.js";
import type { DhcpLease, DhcpLeaseChange, DhcpLeaseEvent, DhcpReservation, DhcpServerOptions } from "./types.js";

type NakDecision = Extract<Decision, { action: "nak" }>;

/** Replacements for the network side, for tests. */
export interface DhcpServerHooks {
  transport?: DhcpTransport;
}

// setTimeout fires at once for delays above 2^31 - 1 ms, so long waits are cut
// into pieces of at most one hour and the deadline is checked again.
const MAX_TIMER_DELAY_MS = 3_600_000;
const HOSTNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$/;

const NAK_MESSAGES: Record<NakReason, string> = {
  wrong_address: "requested address is not reserved for this client",
  address_declined: "address was declined and is held back",
  no_reservation: "client has no reservation",
};

export class DhcpServer {
  readonly counters = new Counters();
  private readonly warnings: RateLimitedLog;
  private transport: DhcpTransport | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly config: ServerConfig,
    private readonly options: DhcpServerOptions,
    private readonly table: LeaseTable,
    private readonly log: Logger,
  ) {
    this.warnings = new RateLimitedLog(log);
  }

  /**
   * Loads the lease table, opens the sockets on the LAN interface and starts
   * serving requests. Rejects for invalid options, an unreadable lease file or a
   * socket that cannot be opened.
   */
  static async start(options: DhcpServerOptions, hooks: DhcpServerHooks = {}): Promise<DhcpServer> {
    const config = validateServerOptions(options);
    const log = options.logger ?? logger("dhcp", { interface: config.interfaceName });
    const { table, invalid } = loadLeaseTable(options.leaseFile);
    if (invalid) {
      log.error({ err: invalid.error, file: options.leaseFile, movedTo: invalid.movedTo }, "lease file is invalid, so it was moved aside and the lease table starts empty");
    }
    const server = new DhcpServer(config, options, table, log);
    const transport =
      hooks.transport ??
      (await DeviceTransport.open({
        interfaceName: config.interfaceName,
        serverAddress: config.serverAddress,
        serverPort: config.serverPort,
        onSocketError: (err) => {
          server.counters.add("dhcp.socket_error");
          server.warnings.warn("socket_error", { err, reason: "socket_error" }, "DHCP socket error");
        },
        onServerAddressMissing: (err) =>
          log.warn(
            { err, virtualIP: config.serverAddress },
            "server address is not assigned to the LAN interface, so clients cannot renew by unicast and must rebind by broadcast",
          ),
      }));
    server.attach(transport);
    log.info(
      { virtualIP: config.serverAddress, port: config.serverPort, leaseSeconds: config.leaseSeconds, leases: table.list(Date.now()).length },
      "DHCP server started",
    );
    return server;
  }

  private attach(transport: DhcpTransport): void {
    this.transport = transport;
    transport.onDatagram((datagram) => this.receive(datagram));
    this.runExpiry();
  }

  /** Stops serving and closes the sockets. The lease file keeps the last saved table. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.expiryTimer);
    await this.transport?.close();
    this.log.info("DHCP server stopped");
  }

  /** Returns the unexpired leases, sorted by MAC. */
  leases(): DhcpLease[] {
    return this.table.list(Date.now());
  }

  /** Returns whether `mac` holds an unexpired lease of `address`. */
  isLeased(mac: string, address: string): boolean {
    const normalized = normalizeMac(mac);
    if (normalized === undefined) return false;
    return this.table.get(normalized, Date.now())?.address === address;
  }

  private receive(datagram: DhcpDatagram): void {
    if (this.closed) return;
    try {
      this.handle(datagram);
    } catch (err) {
      // A bug must cost one message, never the server.
      this.counters.add("dhcp.drop.internal_error");
      this.warnings.warn("internal_error", { err, reason: "internal_error", endpoint: datagram.source }, "handling a DHCP message failed, so it was dropped");
    }
  }

  private handle(datagram: DhcpDatagram): void {
    this.counters.add("dhcp.rx.datagrams");
    const decoded = decodeMessage(datagram.data);
    if (!decoded.ok) {
      this.drop(decoded.failure.reason, { endpoint: datagram.source, detail: decoded.failure.detail });
      return;
    }
    const request = decoded.message;
    const checked = checkRequest(request);
    if (!checked.ok) {
      this.drop(checked.reason, { endpoint: datagram.source, detail: checked.detail });
      return;
    }
    const { mac, messageType } = checked;
    this.counters.add(`dhcp.rx.${messageTypeName(messageType)}`);

    let reservation: DhcpReservation | undefined;
    try {
      reservation = this.findReservation(mac);
    } catch (err) {
      this.counters.add("dhcp.drop.reservations_error");
      this.warnings.warn("reservations_error", { err, reason: "reservations_error", mac }, "reading the reservations failed, so the message was dropped");
      return;
    }
    const nowMs = Date.now();
    const decision = decide({
      request,
      messageType,
      reservation,
      lease: this.table.get(mac, nowMs),
      serverAddress: this.config.serverAddress,
      toServerAddress: datagram.toServerAddress,
      isDeclined: (address) => this.table.isDeclined(address, nowMs),
    });
    this.apply(decision, request, mac, reservation, nowMs);
  }

  private findReservation(mac: string): DhcpReservation | undefined {
    for (const entry of this.options.reservations()) {
      if (normalizeMac(entry.mac) !== mac) continue;
      if (typeof entry.address !== "string" || !net.isIPv4(entry.address)) {
        this.warnings.warn(`bad_reservation:${mac}`, { mac, reason: "bad_reservation" }, "reservation has no valid IPv4 address, so the client is treated as unknown");
        return undefined;
      }
      const hostname = typeof entry.hostname === "string" && HOSTNAME_PATTERN.test(entry.hostname) ? entry.hostname : undefined;
      return { mac, address: entry.address, hostname };
    }
    return undefined;
  }

  private apply(decision: Decision, request: DhcpMessage, mac: string, reservation: DhcpReservation | undefined, nowMs: number): void {
    if ("state" in decision && decision.state) this.counters.add(`dhcp.request.${decision.state}`);
    switch (decision.action) {
      case "ignore":
        this.ignore(decision.reason, mac);
        return;
      case "offer":
        this.reply(request, { type: "offer", address: decision.reservation.address, hostname: decision.reservation.hostname }, mac);
        return;
      case "ack":
        this.acknowledge(request, decision.state, decision.reservation, nowMs);
        return;
      case "nak":
        this.refuse(request, decision, mac, reservation, nowMs);
        return;
      case "inform":
        this.counters.add("dhcp.ack.inform");
        this.reply(request, { type: "inform_ack", hostname: decision.reservation.hostname }, mac);
        return;
      case "release":
        this.table.release(mac);
        this.log.info({ mac, virtualIP: decision.lease.address }, "DHCP lease released by the client");
        this.changed({ mac, address: decision.lease.address, event: "released" });
        return;
      case "decline":
        this.table.decline(mac, decision.reservation.address, nowMs + this.config.declineHoldSeconds * 1000);
        this.warnings.warn(
          `decline:${mac}`,
          { mac, virtualIP: decision.reservation.address, holdSeconds: this.config.declineHoldSeconds },
          "DHCP client declined its reserved address because another device uses it; the address is held back",
        );
        this.changed({ mac, address: decision.reservation.address, event: "declined" });
        return;
    }
  }

  private acknowledge(request: DhcpMessage, state: RequestState, reservation: DhcpReservation, nowMs: number): void {
    const { mac, address } = reservation;
    const { previous, ended } = this.table.bind(mac, address, nowMs + this.config.leaseSeconds * 1000);
    this.counters.add(`dhcp.ack.${state}`);
    this.reply(request, { type: "ack", address, hostname: reservation.hostname }, mac);
    for (const lease of ended) this.changed({ mac: lease.mac, address: lease.address, event: "expired" });
    const event: DhcpLeaseEvent = previous && previous.address === address && previous.expiresMs > nowMs ? "renewed" : "bound";
    if (event === "bound") this.log.info({ mac, virtualIP: address, state }, "DHCP lease bound");
    else this.log.debug({ mac, virtualIP: address, state }, "DHCP lease renewed");
    this.changed({ mac, address, event });
  }

  private refuse(request: DhcpMessage, nak: NakDecision, mac: string, reservation: DhcpReservation | undefined, nowMs: number): void {
    const { state, reason, requestedAddress } = nak;
    this.counters.add(`dhcp.nak.${state}`);
    this.reply(request, { type: "nak", message: NAK_MESSAGES[reason] }, mac);
    this.warnings.warn(`nak:${mac}`, { mac, virtualIP: requestedAddress, state, reason }, "DHCP request refused with a NAK");
    // A lease on an address that is no longer the client's reservation ends with the NAK.
    const lease = this.table.get(mac, nowMs);
    if (lease && lease.address !== reservation?.address) {
      this.table.release(mac);
      this.changed({ mac, address: lease.address, event: "expired" });
    }
  }

  private ignore(reason: string, mac: string): void {
    this.counters.add(`dhcp.drop.${reason}`);
    if (reason === "other_server") {
      // RFC 2131 section 4.3.2: the client chose another server's offer, which is normal.
      this.log.debug({ mac, reason }, "DHCP request for another server ignored");
      return;
    }
    if (reason === "unknown_client") {
      this.warnings.warn(`unknown:${mac}`, { mac, reason }, "DHCP client MAC has no reservation, so it gets no reply");
      return;
    }
    this.warnings.warn(`ignore:${reason}:${mac}`, { mac, reason }, "DHCP message ignored");
  }

  private drop(reason: string, fields: { endpoint: string; detail: string }): void {
    this.counters.add(`dhcp.drop.${reason}`);
    this.warnings.warn(`drop:${reason}`, { reason, ...fields }, "invalid DHCP datagram dropped");
  }

  private reply(request: DhcpMessage, kind: ReplyKind, mac: string): void {
    const reply = buildReply(request, kind, this.config);
    if (reply.omittedOptions.length > 0) {
      this.counters.add("dhcp.reply.option_omitted");
      this.warnings.warn(`omitted:${mac}`, { mac, omittedOptions: reply.omittedOptions }, "DHCP reply exceeds the client's maximum message size, so options were left out");
    }
    const txType = kind.type === "inform_ack" ? "ack" : kind.type;
    this.counters.add(`dhcp.tx.${txType}`);
    const { address, port } = reply.destination;
    this.transport?.send(reply.data, address, port).catch((err: unknown) => {
      this.counters.add("dhcp.tx.error");
      this.warnings.warn(`tx_error:${mac}`, { err, mac, endpoint: `${address}:${port}`, reason: "tx_error" }, "sending a DHCP reply failed");
    });
  }

  /** Counts the change, saves the table, reschedules expiry and calls onLease. */
  private changed(change: DhcpLeaseChange): void {
    this.counters.add(`dhcp.lease.${change.event}`);
    this.save();
    this.runExpiry();
    this.notify(change);
  }

  private save(): void {
    try {
      this.table.save();
    } catch (err) {
      // The table in memory stays authoritative; the next change tries again.
      this.counters.add("dhcp.lease_file.write_error");
      this.warnings.warn("lease_file_write", { err, file: this.table.file }, "writing the lease file failed");
    }
  }

  /** Ends leases and holds that are due, then sets a timer for the next deadline. */
  private runExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.closed) return;
    const nowMs = Date.now();
    const deadline = this.table.nextDeadlineMs();
    if (deadline === undefined) return;
    if (deadline <= nowMs) {
      const expired = this.table.expire(nowMs);
      for (const lease of expired) {
        this.log.info({ mac: lease.mac, virtualIP: lease.address }, "DHCP lease expired");
        this.counters.add("dhcp.lease.expired");
        this.notify({ mac: lease.mac, address: lease.address, event: "expired" });
      }
      this.save();
      this.runExpiry();
      return;
    }
    this.expiryTimer = setTimeout(() => this.runExpiry(), Math.min(deadline - nowMs, MAX_TIMER_DELAY_MS));
    this.expiryTimer.unref();
  }

  private notify(change: DhcpLeaseChange): void {
    try {
      this.options.onLease?.(change);
    } catch (err) {
      this.warnings.warn("on_lease_error", { err, mac: change.mac, virtualIP: change.address }, "onLease callback failed");
    }
  }
}
