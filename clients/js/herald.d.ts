// herald.d.ts - types of herald.js (see docs/clients.md).

export const VERSION: string;

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';
export const STATES: { readonly DISCONNECTED: 'disconnected'; readonly CONNECTING: 'connecting'; readonly CONNECTED: 'connected' };

/** Client-side codes; the broker's codes (100 and up) are those of docs/protocol.md section 6. */
export const ERR_TIMEOUT: 1;
export const ERR_DISCONNECTED: 2;
export const ERR_CLOSED: 3;
export const ERR_MALFORMED: 4;
export const ERR_TOKEN: 113;

export class HeraldError extends Error {
  constructor(code: number, reason: string, details?: object);
  readonly name: 'HeraldError';
  readonly code: number;
  readonly reason: string;
  /** 119/120/121: the seats concerned. */
  readonly seats?: string[];
  /** 120: the unknown section. */
  readonly section?: string;
  /** 117: the key's version now. */
  readonly version?: number;
}

export interface BackoffOptions {
  /** First retry within this many ms (default 500). */
  minReconnectDelay?: number;
  /** Never wait longer than this (default 20000). */
  maxReconnectDelay?: number;
  /** Growth per attempt (default 2). */
  backoffFactor?: number;
}

export function backoffDelay(attempt: number, opts?: BackoffOptions, random?: () => number): number;

export interface StateEntry<V = unknown> { value: V; version: number }
export interface StateChange<V = unknown> { key: string; value: V | undefined; version: number; deleted: boolean }
export interface StateDelta { changes?: Array<{ key: string; value?: unknown; version?: number; deleted?: boolean }>; reset?: boolean }

export function applyDelta(map: Map<string, StateEntry>, data: StateDelta): StateChange[];
export function replaceState(map: Map<string, StateEntry>, snapshot: Record<string, StateEntry>): StateChange[];
export function msgpackEncode(value: unknown): Uint8Array;
export function msgpackDecodeFrame(bytes: ArrayBuffer | Uint8Array): { messages: Array<Record<string, unknown> & { op: string }>; errors: HeraldError[] };
export function parseFrame(text: unknown): { messages: Array<Record<string, unknown> & { op: string }>; errors: HeraldError[] };

type Listener = (...args: any[]) => void;
declare class Emitter {
  /** Returns a function that removes the listener. */
  on(event: string, fn: Listener): () => void;
  once(event: string, fn: Listener): () => void;
  off(event: string, fn: Listener): void;
  emit(event: string, ...args: unknown[]): void;
}

export interface HeraldOptions extends BackoffOptions {
  token?: string;
  /** Called before every connect and on refresh_required. */
  getToken?: () => string | Promise<string>;
  /** 'json' (subprotocol herald.json, the default) or 'msgpack' (herald.msgpack, binary frames). */
  encoding?: 'json' | 'msgpack';
  /** A WebSocket constructor (Node: `import WebSocket from 'ws'`). Browsers: the global one. */
  WebSocket?: unknown;
  /** Connected this long: the next drop starts the backoff from the first step (default 10000). */
  stableAfter?: number;
  /** Idle this long: send a ping (default 20000; 0: never). */
  pingInterval?: number;
  /** No answer to the ping within this: the connection is dead and is replaced (default 10000). */
  pongTimeout?: number;
  /** Requests fail with ERR_TIMEOUT after this (default 10000). */
  requestTimeout?: number;
  /** WebSocket open plus connect reply within this (default 10000). */
  connectTimeout?: number;
}

export interface ConnectedInfo { client: string; user: string | null; expires: number | null; version: string }

export interface From { user?: string; client: string; info?: unknown }
export interface Publication<D = unknown> {
  channel: string; offset: number; ts: number; data: D;
  from?: From; reply_to?: number; kind?: 'reaction' | 'edit' | 'delete'; history?: boolean;
}
export interface Member { user?: string; client?: string; info?: unknown; connections?: number }

export interface SubscribeOptions {
  /** Keep a PresenceView (subscribe with presence: true). */
  presence?: boolean;
  /** On the first subscribe, also deliver the last N publications. */
  history?: number;
  /** Start from a remembered position (e.g. kept in localStorage). */
  since?: { epoch: string; offset: number };
  /** A subscribe token, or a function returning one, for namespaces that need a grant. */
  token?: string;
  getToken?: (channel: string) => string | Promise<string>;
}

export class PresenceView extends Emitter {
  readonly members: Map<string, Member>;
  readonly count: number;
  readonly tiered: boolean;
  list(): Member[];
}

export class Typing extends Emitter {
  readonly throttle: number;
  readonly expire: number;
  /** Sends {typing:true} unless one went out within `throttle` ms. */
  notify(): Promise<boolean>;
  stop(): Promise<boolean>;
  who(): Array<{ key: string; from: From; data: unknown }>;
  close(): void;
}

export class Subscription extends Emitter {
  readonly channel: string;
  readonly epoch: string | null;
  /** The last offset delivered. */
  readonly offset: number;
  readonly status: 'pending' | 'subscribing' | 'subscribed' | 'failed' | 'unsubscribed';
  /** Resolves on the first 'subscribed'; rejects on a refusal. */
  readonly ready: Promise<Subscription>;
  readonly isState: boolean;
  readonly state: Map<string, StateEntry>;
  readonly presence: PresenceView | null;
  get<V = unknown>(key: string): V | undefined;
  publish(data: unknown, opts?: { replyTo?: number; kind?: string }): Promise<{ offset: number }>;
  history(opts?: HistoryOptions): Promise<HistoryPage>;
  signal(data: unknown): Promise<void>;
  update(ops: StateOp[]): Promise<{ offset: number; changes: StateChange[] }>;
  typing(opts?: { throttle?: number; expire?: number; data?: object }): Typing;
  unsubscribe(): Promise<void>;
}

export interface HistoryOptions { since?: number; before?: number; limit?: number; reverse?: boolean; thread?: number }
export interface HistoryPage { channel: string; epoch: string; offset: number; next: object | null; publications: Publication[] }
export type StateOp =
  | { op: 'set'; key: string; value: unknown }
  | { op: 'incr'; key: string; by?: number }
  | { op: 'cas'; key: string; value: unknown; version: number }
  | { op: 'delete'; key: string }
  | { op: 'reset' };

export interface Seat { section: string; price_class?: string; status: 'free' | 'held' | 'booked'; holder?: string; expires?: number; offer?: boolean }
export interface Section { total: number; free: number; held: number; booked: number; waiting: number }
export interface SeatOffer { seat: string; section: string; expires: number; event: string }

export class SeatMap extends Emitter {
  readonly event: string;
  readonly channel: string;
  user: string | null;
  readonly seats: Map<string, Seat>;
  readonly sections: Map<string, Section>;
  readonly ready: Promise<SeatMap>;
  status(id: string): 'free' | 'held' | 'booked' | 'mine' | 'unknown';
  /** Rejects with HeraldError 119 (err.seats: those taken) when any is unavailable. */
  hold(seats: string[], ttl?: number): Promise<{ seats: string[]; expires: number; offset: number }>;
  confirm(seats: string[]): Promise<{ seats: string[]; offset: number }>;
  release(seats: string[]): Promise<{ seats: string[]; offset: number }>;
  waitlist(section: string): Promise<{ position?: number; offered?: string; expires?: number }>;
  waitlistLeave(section: string): Promise<object>;
  static remaining(expires: number, now?: number): number;
  close(): void;
}

export class Herald extends Emitter {
  constructor(url: string, opts?: HeraldOptions);
  readonly url: string;
  readonly state: ConnectionState;
  readonly user: string | null;
  readonly clientId: string | null;
  readonly expires: number | null;
  connect(): Promise<ConnectedInfo>;
  disconnect(): void;
  subscribe(channel: string, opts?: SubscribeOptions): Subscription;
  subscription(channel: string): Subscription | null;
  seatMap(event: string, opts?: { user?: string; personal?: boolean; act?: (action: string, fields: object) => Promise<any> }): SeatMap;
  publish(channel: string, data: unknown, opts?: { replyTo?: number; kind?: string }): Promise<{ channel: string; offset: number }>;
  history(channel: string, opts?: HistoryOptions): Promise<HistoryPage>;
  presence(channel: string): Promise<{ count: number; connections: number; members: Member[]; tiered?: boolean }>;
  presenceStats(channel: string): Promise<{ members: number; connections: number }>;
  /** The protocol's `state` op: atomic operations on a state channel. */
  update(channel: string, ops: StateOp[]): Promise<{ channel: string; offset: number; changes: StateChange[] }>;
  seatsOp(channel: string, action: string, fields: object): Promise<any>;
  signal(channel: string, data: unknown): Promise<void>;
  ping(): Promise<{ op: 'pong' }>;
  request(msg: { op: string; [k: string]: unknown }, opts?: { timeout?: number }): Promise<any>;
}

export default Herald;
