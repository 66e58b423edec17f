import * as grpc from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { greeterService } from "./grpc.ts";

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export const ServingStatus = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2 } as const;

/** grpc.health.v1.Health/Check as raw method definitions: the two one-field messages, in protobuf. */
const healthService = {
  check: {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: (service: string) => Buffer.from(new BinaryWriter().tag(1, WireType.LengthDelimited).string(service).finish()),
    requestDeserialize: (bytes: Buffer) => {
      const r = new BinaryReader(bytes);
      let service = "";
      while (r.pos < r.len) {
        const [field, type] = r.tag();
        if (field === 1) service = r.string();
        else r.skip(type);
      }
      return service;
    },
    responseSerialize: (status: number) => Buffer.from(new BinaryWriter().tag(1, WireType.Varint).int32(status).finish()),
    responseDeserialize: () => 0, // no client here
  },
} satisfies grpc.ServiceDefinition;

export interface HealthServer {
  port: number;
  name: string;
  /** The status Check answers per service name ("" is the whole server); a name not here gets NOT_FOUND. */
  statuses: Map<string, number>;
  /** SayHello answers UNAVAILABLE while set. */
  unavailable: boolean;
  /** Check calls answered. */
  checks: number;
  /** SayHello calls answered. */
  calls: number;
  kill(): void;
}

/** A real grpc-js server implementing grpc.health.v1.Health and the Greeter's SayHello, h2c. */
export async function startHealthServer(name: string): Promise<HealthServer> {
  const server = new grpc.Server();
  const state: HealthServer = { port: 0, name, statuses: new Map([["", ServingStatus.SERVING]]), unavailable: false, checks: 0, calls: 0, kill: () => server.forceShutdown() };
  server.addService(healthService, {
    check: (call: grpc.ServerUnaryCall<string, number>, cb: grpc.sendUnaryData<number>) => {
      state.checks++;
      const status = state.statuses.get(call.request);
      if (status === undefined) return cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request}` });
      cb(null, status);
    },
  });
  server.addService(greeterService, {
    sayHello: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      state.calls++;
      if (state.unavailable) return cb({ code: grpc.status.UNAVAILABLE, details: `${name} is unavailable` });
      cb(null, { server: name });
    },
  });
  state.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return state;
}
