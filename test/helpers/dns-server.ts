import dgram from "node:dgram";

export interface SrvRecord {
  target: string;
  port: number;
}

/**
 * A tiny authoritative DNS server over UDP on loopback that answers SRV queries from a table
 * (RFC 1035 wire format, RFC 2782 SRV rdata). Anything else gets an empty NOERROR answer.
 */
export async function startDnsServer(records: Map<string, SrvRecord[]>): Promise<{ address: string; close: () => void }> {
  const sock = dgram.createSocket("udp4");
  sock.on("message", (msg, peer) => {
    let i = 12;
    const labels: string[] = [];
    while (msg[i] !== 0) {
      labels.push(msg.subarray(i + 1, i + 1 + msg[i]).toString());
      i += msg[i] + 1;
    }
    const qtype = msg.readUInt16BE(i + 1);
    const question = msg.subarray(12, i + 5);
    const found = qtype === 33 ? (records.get(labels.join(".").toLowerCase()) ?? []) : [];
    const answers = found.map((r) => {
      const target = Buffer.concat([...r.target.split(".").map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
      const rdata = Buffer.alloc(6);
      rdata.writeUInt16BE(0, 0); // priority
      rdata.writeUInt16BE(10, 2); // weight
      rdata.writeUInt16BE(r.port, 4);
      const fixed = Buffer.alloc(10);
      fixed.writeUInt16BE(33, 0); // type SRV
      fixed.writeUInt16BE(1, 2); // class IN
      fixed.writeUInt32BE(5, 4); // TTL
      fixed.writeUInt16BE(rdata.length + target.length, 8);
      return Buffer.concat([Buffer.from([0xc0, 12]), fixed, rdata, target]); // name: pointer to the question
    });
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    header.writeUInt16BE(found.length > 0 || qtype !== 33 ? 0x8180 : 0x8183, 2); // response; NXDOMAIN for unknown SRV names
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    sock.send(Buffer.concat([header, question, ...answers]), peer.port, peer.address);
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  return { address: `127.0.0.1:${sock.address().port}`, close: () => sock.close() };
}

/**
 * A DNS server that receives queries and answers none, made kedge's (KEDGE_DNS_SERVERS): a
 * backend resolved through it waits for its first answer until the resolver gives up (4 s).
 * `close` stops it and restores the variable.
 */
export async function useSilentDns(): Promise<{ close: () => void }> {
  const saved = process.env.KEDGE_DNS_SERVERS;
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  process.env.KEDGE_DNS_SERVERS = `127.0.0.1:${sock.address().port}`;
  return {
    close: () => {
      sock.close();
      if (saved === undefined) delete process.env.KEDGE_DNS_SERVERS;
      else process.env.KEDGE_DNS_SERVERS = saved;
    },
  };
}
