// A gRPC client as an application runs it: Node and @grpc/grpc-js, with its proxy taken from the
// environment it was started with (grpc_proxy / https_proxy are read when the channel is made).
// Usage: node grpc-env-client.mjs '{"target":"host:port","authority":"…"?,"stream":true?}'
// Prints {"unary": {message, auth, requestId} | {code, details}, "stream"?: [1, 2, 3] | {code, details}}.
import * as grpc from "@grpc/grpc-js";

const json = {
  requestSerialize: (v) => Buffer.from(JSON.stringify(v)),
  requestDeserialize: (b) => JSON.parse(b.toString()),
  responseSerialize: (v) => Buffer.from(JSON.stringify(v)),
  responseDeserialize: (b) => JSON.parse(b.toString()),
};
const Greeter = grpc.makeGenericClientConstructor(
  {
    sayHello: { path: "/e2e.helloworld.Greeter/SayHello", requestStream: false, responseStream: false, ...json },
    countTo: { path: "/e2e.helloworld.Greeter/CountTo", requestStream: false, responseStream: true, ...json },
  },
  "Greeter",
);

const args = JSON.parse(process.argv[2]);
const options = args.authority ? { "grpc.default_authority": args.authority } : {};
const client = new Greeter(args.target, grpc.credentials.createInsecure(), options);
const deadline = () => new Date(Date.now() + 20_000);
const failure = (err) => ({ code: err.code, details: err.details });

const unary = await new Promise((resolve) =>
  client.sayHello({ name: "kedge" }, { deadline: deadline() }, (err, res) => resolve(err ? failure(err) : res)),
);
const out = { unary };
if (args.stream) {
  out.stream = await new Promise((resolve) => {
    const got = [];
    const call = client.countTo({ n: 3 }, { deadline: deadline() });
    call.on("data", (m) => got.push(m.i));
    call.on("error", (err) => resolve(failure(err)));
    call.on("end", () => resolve(got));
  });
}
client.close();
process.stdout.write(`${JSON.stringify(out)}\n`);
