// The official TypeScript SDK client with its OAuth provider, driven by Warrant's
// end-to-end tests as a person would drive a desktop agent:
//   node oauth_client.mjs MCP_URL TOOL JSON_ARGS
//
// The client connects, gets a 401, discovers the protected resource and the
// authorization server, registers itself (RFC 7591) with a loopback redirect URI it
// listens on, and asks the person to open the authorization URL: it prints
//   AUTHORIZE <url>
// on one line, and waits (at most a minute) for the browser to come back to its
// callback. It then exchanges the code (PKCE, RFC 8707 resource), reconnects with the
// token, lists every tool, calls TOOL with JSON_ARGS and prints one line:
//   RESULT {"protocolVersion", "clientId", "iss", "scope", "tools", "result", ...}
// With PAUSE_MS set, it then waits that long (past the access token's life, say) and
// calls TOOL again in the same session: "again" is that result, "tokensSaved" counts
// the tokens the SDK got (a refresh is the second).
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [url, tool, rawArgs] = process.argv.slice(2);
if (!url || !tool) {
  console.error('usage: node oauth_client.mjs MCP_URL TOOL [JSON_ARGS]');
  process.exit(2);
}
const pauseMs = Number(process.env.PAUSE_MS ?? 0);
// Every wait is bounded: the whole run gets a minute (plus the pause).
setTimeout(() => {
  console.error('oauth_client: gave up');
  process.exit(3);
}, 60_000 + pauseMs).unref();

// The loopback callback (RFC 8252 §7.3), on a port the OS picks.
let delivered;
const callback = new Promise((resolve) => {
  delivered = resolve;
});
const server = http.createServer((req, res) => {
  const at = new URL(req.url, 'http://127.0.0.1');
  if (at.pathname !== '/callback') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end('Signed in. You can close this window.');
  delivered(at.searchParams);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const redirectUri = `http://127.0.0.1:${server.address().port}/callback`;

class PersonInTheLoop {
  constructor() {
    this.expectedState = randomBytes(16).toString('base64url');
  }
  get redirectUrl() {
    return redirectUri;
  }
  get clientMetadata() {
    return {
      client_name: 'Warrant e2e (TypeScript SDK)',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    return this.expectedState;
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
    this.tokensSaved = (this.tokensSaved ?? 0) + 1;
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  redirectToAuthorization(authorizationUrl) {
    this.authorizationUrl = authorizationUrl;
    console.log(`AUTHORIZE ${authorizationUrl.href}`);
  }
}

const provider = new PersonInTheLoop();
const newClient = () => new Client({ name: 'warrant-e2e-ts-oauth', version: '0.0.0' });

let client = newClient();
let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
let iss = null;
try {
  await client.connect(transport);
  throw new Error('the server let the client in without a token');
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  if (!provider.authorizationUrl) throw new Error(`unauthorized, but no authorization was started: ${e}`);
  const params = await callback;
  if (params.get('error')) {
    throw new Error(`the authorization server refused: ${params.get('error')} ${params.get('error_description')}`);
  }
  if (params.get('state') !== provider.expectedState) throw new Error('state mismatch');
  iss = params.get('iss');
  await transport.finishAuth(params.get('code'));
}
server.close();

client = newClient();
transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
await client.connect(transport);
const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : {});
  tools.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor);
const result = await client.callTool({ name: tool, arguments: JSON.parse(rawArgs ?? '{}') });
let again;
if (pauseMs > 0) {
  await new Promise((resolve) => setTimeout(resolve, pauseMs));
  again = await client.callTool({ name: tool, arguments: JSON.parse(rawArgs ?? '{}') });
}
console.log(
  `RESULT ${JSON.stringify({
    protocolVersion: transport.protocolVersion,
    clientId: provider.client?.client_id,
    iss,
    scope: provider.authorizationUrl.searchParams.get('scope'),
    resource: provider.authorizationUrl.searchParams.get('resource'),
    tokenType: provider.saved?.token_type,
    refresh: Boolean(provider.saved?.refresh_token),
    tools,
    result,
    again,
    tokensSaved: provider.tokensSaved,
  })}`,
);
await transport.terminateSession();
await client.close();
process.exit(0);
