import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { create, createFileRegistry, type DescService } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

// test/helpers/grpc.ts's Greeter as a Connect service. Its messages travel as JSON
// (application/grpc+json with useBinaryFormat: false), which the grpc-js greeter reads and writes.

const { STRING: str, INT32: int } = FieldDescriptorProto_Type;

function message(name: string, fields: Array<[string, FieldDescriptorProto_Type]>) {
  return { name, field: fields.map(([fieldName, type], i) => ({ name: fieldName, jsonName: fieldName, number: i + 1, type, label: FieldDescriptorProto_Label.OPTIONAL })) };
}

const file = create(FileDescriptorProtoSchema, {
  name: "e2e/helloworld.proto",
  package: "e2e.helloworld",
  syntax: "proto3",
  messageType: [
    message("HelloRequest", [["name", str]]),
    message("HelloReply", [["message", str], ["server", str], ["authority", str], ["auth", str], ["requestId", str]]),
    message("CountRequest", [["n", int], ["then", str]]),
    message("CountReply", [["i", int], ["server", str]]),
    message("SumRequest", [["n", int], ["then", str]]),
    message("SumReply", [["total", int], ["server", str]]),
    message("ChatMessage", [["text", str]]),
    message("ChatReply", [["echo", str], ["server", str]]),
    message("SleepRequest", [["ms", int]]),
    message("SleepReply", [["slept", int]]),
  ],
  service: [
    {
      name: "Greeter",
      method: [
        { name: "SayHello", inputType: ".e2e.helloworld.HelloRequest", outputType: ".e2e.helloworld.HelloReply" },
        { name: "CountTo", inputType: ".e2e.helloworld.CountRequest", outputType: ".e2e.helloworld.CountReply", serverStreaming: true },
        { name: "Sum", inputType: ".e2e.helloworld.SumRequest", outputType: ".e2e.helloworld.SumReply", clientStreaming: true },
        { name: "Chat", inputType: ".e2e.helloworld.ChatMessage", outputType: ".e2e.helloworld.ChatReply", clientStreaming: true, serverStreaming: true },
        { name: "Sleep", inputType: ".e2e.helloworld.SleepRequest", outputType: ".e2e.helloworld.SleepReply" },
      ],
    },
  ],
});

export const GreeterService = createFileRegistry(file, () => undefined).getService("e2e.helloworld.Greeter") as DescService;

/** The transport options the JSON Greeter needs: JSON messages, and replies' extra fields ignored. */
export const greeterJson = { useBinaryFormat: false, jsonOptions: { ignoreUnknownFields: true } } as const;

/** A Connect client of the Greeter; its methods are untyped, as the service is built at run time. */
export const connectGreeter = (transport: Transport): Record<string, any> => createClient(GreeterService, transport);

/** The ConnectError a call fails with; throws when it succeeds. */
export async function connectError(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("the call succeeded");
}

/** Every message of a stream. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of stream) out.push(m);
  return out;
}
