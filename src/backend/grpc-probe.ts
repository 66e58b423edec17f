import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { StreamError } from "../h2/frames.js";
import { addField, finishBlock, startBlock, type H2Headers } from "../h2/hpack.js";
import type { H2Session } from "../upstream/h2-session.js";
import type { H2Stream, StreamHandler } from "../upstream/h2/stream.js";
import type { Endpoint } from "./endpoint.js";
import type { Probe } from "./health-check.js";

/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const serving = 1;

/** A gRPC message as it goes on the wire: compressed flag, 4-byte length, the bytes. */
function grpcFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** grpc.health.v1.HealthCheckRequest{service} framed for a call. */
function checkRequest(service: string): Uint8Array {
  const w = new BinaryWriter();
  if (service !== "") w.tag(1, WireType.LengthDelimited).string(service);
  return grpcFrame(w.finish());
}

/** The status of a framed grpc.health.v1.HealthCheckResponse; 0 (UNKNOWN) when absent. */
function servingStatus(frame: Uint8Array): number {
  const r = new BinaryReader(frame.subarray(5));
  let status = 0;
  while (r.pos < r.len) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.Varint) status = r.int32();
    else r.skip(type, field);
  }
  return status;
}

/** One grpc.health.v1.Health/Check call on an endpoint's session; SERVING passes. */
class GrpcCheck implements StreamHandler {
  private readonly chunks: Uint8Array[] = [];
  private grpcStatus: string | undefined;
  private settled = false;
  private readonly timer: Timer;
  private readonly stream: H2Stream;

  constructor(
    session: H2Session,
    authority: string,
    /** What a call to another cluster's kedge carries (x-kedge-hops, its token); undefined elsewhere. */
    fields: Readonly<Record<string, string>> | undefined,
    request: Uint8Array,
    timeoutMs: number,
    private readonly done: (problem: string | undefined) => void,
  ) {
    this.timer = setTimeout(() => {
      this.stream.cancel();
      this.settle(`no answer within ${timeoutMs}ms`);
    }, timeoutMs);
    startBlock();
    addField(":method", "POST");
    addField(":scheme", session.options.tls ? "https" : "http");
    addField(":path", "/grpc.health.v1.Health/Check");
    addField(":authority", authority);
    addField("content-type", "application/grpc");
    addField("te", "trailers");
    addField("grpc-timeout", `${Math.min(timeoutMs, 99_999_999)}m`); // at most 8 digits
    addField("user-agent", "kedge-health-check");
    if (fields) for (const name in fields) addField(name, fields[name]);
    this.stream = session.request(finishBlock(), this);
    this.stream.end(request);
  }

  response(headers: H2Headers, endStream: boolean): void {
    if (endStream) this.grpcStatus = headers["grpc-status"] as string | undefined;
  }

  data(bytes: Uint8Array, start: number, end: number): void {
    this.chunks.push(bytes.slice(start, end));
  }

  trailers(headers: H2Headers): void {
    this.grpcStatus = headers["grpc-status"] as string | undefined;
  }

  end(): void {}

  drain(): void {}

  close(err: StreamError | undefined): void {
    if (err) return this.settle(err.message);
    if (this.grpcStatus !== "0") return this.settle(`grpc-status ${this.grpcStatus ?? "missing"}`);
    const frame = Buffer.concat(this.chunks);
    let status: number;
    try {
      status = frame.length >= 5 ? servingStatus(frame) : 0;
    } catch {
      return this.settle("undecodable HealthCheckResponse");
    }
    this.settle(status === serving ? undefined : `serving status ${status}`);
  }

  private settle(problem: string | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.done(problem);
  }
}

/** The probe of a gRPC backend's health_check.grpc; `authority` names the :authority for an endpoint. */
export function grpcProbe(service: string, authority: (endpoint: Endpoint) => string): Probe<H2Session> {
  const request = checkRequest(service);
  return (endpoint, session, timeoutMs) => new Promise((resolve) => new GrpcCheck(session, authority(endpoint), endpoint.hop?.fields(undefined, undefined), request, timeoutMs, resolve));
}
