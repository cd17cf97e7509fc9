// The official TypeScript SDK client, driven by Warrant's end-to-end tests:
//   node ts-client.mjs URL TOOL JSON_ARGS
// connects over Streamable HTTP, lists every tool (following pages), calls TOOL with
// JSON_ARGS, and prints one JSON line: {protocolVersion, tools, result}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, tool, rawArgs] = process.argv.slice(2);
if (!url || !tool) {
  console.error('usage: node ts-client.mjs URL TOOL [JSON_ARGS]');
  process.exit(2);
}
const client = new Client({ name: 'warrant-e2e-ts', version: '0.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : {});
  tools.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor);
const result = await client.callTool({ name: tool, arguments: JSON.parse(rawArgs ?? '{}') });
console.log(JSON.stringify({ protocolVersion: transport.protocolVersion, tools, result }));
await transport.terminateSession();
await client.close();
