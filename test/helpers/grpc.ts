import * as grpc from "@grpc/grpc-js";

/** JSON on the wire: kedge never decodes messages, so any serialization proves pass-through. */
const json = {
  requestSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  requestDeserialize: (b: Buffer) => JSON.parse(b.toString()),
  responseSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  responseDeserialize: (b: Buffer) => JSON.parse(b.toString()),
};

/** e2e.helloworld.Greeter as kedge Go's tests used it, plus the other three call kinds. */
export const greeterService = {
  sayHello: { path: "/e2e.helloworld.Greeter/SayHello", requestStream: false, responseStream: false, ...json },
  countTo: { path: "/e2e.helloworld.Greeter/CountTo", requestStream: false, responseStream: true, ...json },
  sum: { path: "/e2e.helloworld.Greeter/Sum", requestStream: true, responseStream: false, ...json },
  chat: { path: "/e2e.helloworld.Greeter/Chat", requestStream: true, responseStream: true, ...json },
  sleep: { path: "/e2e.helloworld.Greeter/Sleep", requestStream: false, responseStream: false, ...json },
  big: { path: "/e2e.helloworld.Greeter/Big", requestStream: false, responseStream: false, ...json },
} satisfies grpc.ServiceDefinition;

export const GreeterClient = grpc.makeGenericClientConstructor(greeterService, "Greeter");

export interface GreeterServer {
  port: number;
  name: string;
  /** Calls to Sleep that ended because the caller cancelled them. */
  cancelled: number;
  close(): Promise<void>;
  kill(): void;
}

/**
 * A real gRPC server (grpc-js) implementing the Greeter, h2c or TLS requiring a client cert;
 * "fail" as a name returns an app error with trailers.
 */
export async function startGreeter(
  name: string,
  tls?: { ca: string; cert: string; key: string },
  options: { port?: number; serverOptions?: grpc.ServerOptions; requiredAuthorization?: () => string | undefined } = {},
): Promise<GreeterServer> {
  const unlimited = { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 };
  const server = new grpc.Server({ ...unlimited, ...options.serverOptions });
  const state = { cancelled: 0 };
  // A call asked to hang never answers; only the caller's cancellation (or a kill) ends it.
  const hang = (call: { on(event: "cancelled", listener: () => void): unknown }) => call.on("cancelled", () => state.cancelled++);
  // kedge Go's e2e backend with backend auth on: every call needs `authorization: bearer <token>`.
  const denied = (call: { metadata: grpc.Metadata }) => {
    const want = options.requiredAuthorization?.();
    if (want === undefined) return undefined;
    const got = String(call.metadata.get("authorization")[0] ?? "");
    if (got.toLowerCase() === want.toLowerCase()) return undefined;
    return Object.assign(new Error("backend: missing or wrong authorization"), { code: grpc.status.UNAUTHENTICATED, details: "backend: missing or wrong authorization" });
  };
  const guarded = <C extends { metadata: grpc.Metadata }>(handler: (call: C, cb: grpc.sendUnaryData<unknown>) => void) => (call: C, cb: grpc.sendUnaryData<unknown>) => {
    const err = denied(call);
    return err ? cb(err) : handler(call, cb);
  };
  const guardedStream = <C extends { metadata: grpc.Metadata; emit(e: "error", err: Error): boolean }>(handler: (call: C) => void) => (call: C) => {
    const err = denied(call);
    return err ? void call.emit("error", err) : handler(call);
  };
  server.addService(greeterService, {
    sleep: (call: grpc.ServerUnaryCall<{ ms: number }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const timer = setTimeout(() => cb(null, { slept: call.request.ms }), call.request.ms);
      call.on("cancelled", () => {
        clearTimeout(timer);
        state.cancelled++;
      });
    },
    big: (call: grpc.ServerUnaryCall<{ payload: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { payload: call.request.payload, length: call.request.payload.length }),
    sayHello: guarded((call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      if (call.request.name === "fail") return cb(appError());
      if (call.request.name === "hang") return hang(call);
      const auth = call.metadata.get("authorization")[0];
      cb(null, { message: `Hello ${call.request.name}!`, server: name, authority: call.getPath(), auth: auth ?? null, requestId: call.metadata.get("x-kedge-request-id")[0] ?? null });
    }),
    countTo: guardedStream((call: grpc.ServerWritableStream<{ n: number; then?: "fail" | "hang" }, unknown>) => {
      for (let i = 1; i <= call.request.n; i++) call.write({ i, server: name });
      if (call.request.then === "fail") call.emit("error", appError());
      else if (call.request.then === "hang") hang(call);
      else call.end();
    }),
    sum: guarded((call: grpc.ServerReadableStream<{ n: number; then?: "fail" | "hang" }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      let total = 0;
      let then: string | undefined;
      call.on("data", (m: { n: number; then?: string }) => {
        total += m.n;
        then ??= m.then;
        if (then === "hang") hang(call);
      });
      call.on("end", () => {
        if (then === "fail") cb(appError());
        else if (then !== "hang") cb(null, { total, server: name });
      });
    }),
    chat: guardedStream((call: grpc.ServerDuplexStream<{ text: string }, unknown>) => {
      let hanging = false;
      call.on("data", (m: { text: string }) => {
        if (m.text === "fail") return call.emit("error", appError());
        if (m.text === "hang" && !hanging) {
          hanging = true;
          hang(call);
        }
        call.write({ echo: m.text, server: name });
      });
      call.on("end", () => hanging || call.end());
    }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `127.0.0.1:${options.port ?? 0}`,
      tls
        ? grpc.ServerCredentials.createSsl(Buffer.from(tls.ca), [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }], true)
        : grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return {
    port,
    name,
    get cancelled() {
      return state.cancelled;
    },
    close: () => new Promise((r) => server.tryShutdown(() => r())),
    kill: () => server.forceShutdown(),
  };
}

/** An application error with details in the trailers, binary ones included. */
function appError(): grpc.ServerErrorResponse {
  const trailer = new grpc.Metadata();
  trailer.set("x-detail", "because");
  trailer.set("x-detail-bin", Buffer.from([1, 2, 3]));
  return Object.assign(new Error("greeting refused"), { code: grpc.status.FAILED_PRECONDITION, details: "greeting refused", metadata: trailer });
}

/** Calls a unary method and resolves with the response or the error, never throws. */
export function unary(client: grpc.Client, method: string, request: unknown, metadata = new grpc.Metadata()): Promise<{ response?: any; error?: grpc.ServiceError; headers?: grpc.Metadata }> {
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = (client as any)[method](request, metadata, { deadline: Date.now() + 10_000 }, (error: grpc.ServiceError | null, response: unknown) =>
      resolve({ response, error: error ?? undefined, headers }),
    );
    call.on("metadata", (m: grpc.Metadata) => (headers = m));
  });
}

/** Opens the bidi chat stream: what it echoes is collected, `ended` resolves with its error (undefined when it ends cleanly). */
export function openChat(client: grpc.Client): { chat: any; echoes: Array<{ echo: string; server: string }>; ended: Promise<grpc.ServiceError | undefined> } {
  const chat = (client as any).chat();
  const echoes: Array<{ echo: string; server: string }> = [];
  const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
    chat.on("data", (m: { echo: string; server: string }) => echoes.push(m));
    chat.on("error", (e: grpc.ServiceError) => resolve(e));
    chat.on("end", () => resolve(undefined));
  });
  return { chat, echoes, ended };
}
