"""The official Python MCP SDK client with its OAuth provider, driven by Warrant's
end-to-end tests as a person would drive a desktop agent.

    python oauth_client.py MCP_URL MODE TOOL JSON_ARGS [THEN_TOOL THEN_JSON_ARGS]

MODE is the SDK's: "legacy", "2026-07-28" or "auto". The client meets a 401, discovers
the protected resource and the authorization server, registers itself (RFC 7591) with
a loopback redirect URI it listens on, and asks the person to open the authorization
URL: it prints "AUTHORIZE <url>" on one line and waits (at most a minute) for the
browser to come back to its callback. It then exchanges the code, lists the tools,
calls TOOL and prints one line "RESULT <json>": the negotiated protocol version, the
tool names, the text of the result, the client id and the `iss` of the redirect.

THEN_TOOL is called next, in the same session: a tool the person has not approved yet
gets a 403 insufficient_scope, and the SDK asks the person again (step-up): a second
"AUTHORIZE <url>" line, a second trip through the callback. Its result is "then".
"""
import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)


class Memory(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Callback:
    """A loopback listener (RFC 8252 section 7.3) for the redirects back."""

    def __init__(self) -> None:
        self.arrived: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self.last: dict[str, str] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        target = request.decode("latin-1").split(" ")[1] if request.count(b" ") >= 2 else "/"
        url = urlparse(target)
        found = url.path == "/callback"
        body = b"Signed in. You can close this window." if found else b"not found"
        status = b"200 OK" if found else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()
        if found:
            self.arrived.put_nowait({k: v[0] for k, v in parse_qs(url.query).items()})


def texts_of(result) -> list[str]:
    return [c.text for c in result.content if c.type == "text"]


async def main(url: str, mode: str, tool: str, arguments: dict, then: tuple[str, dict] | None) -> None:
    callback = Callback()
    await callback.start()
    redirect_uri = f"http://127.0.0.1:{callback.port}/callback"
    storage = Memory()

    async def redirect_handler(authorization_url: str) -> None:
        print(f"AUTHORIZE {authorization_url}", flush=True)

    async def callback_handler() -> AuthorizationCodeResult:
        params = await asyncio.wait_for(callback.arrived.get(), 60)
        callback.last = params
        if "error" in params:
            raise RuntimeError(f"the authorization server refused: {params}")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="Warrant e2e (Python SDK)",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, arguments)
            report = {}
            if then is not None:
                second = await client.call_tool(then[0], then[1])
                report["then"] = {"text": texts_of(second), "isError": bool(second.is_error)}
            print("RESULT " + json.dumps({
                **report,
                "protocolVersion": str(client.protocol_version),
                "tools": [t.name for t in tools.tools],
                "text": texts_of(result),
                "isError": bool(result.is_error),
                "clientId": storage.client.client_id if storage.client else None,
                "tokenType": storage.tokens.token_type if storage.tokens else None,
                "iss": callback.last.get("iss"),
            }), flush=True)
    if callback.server:
        callback.server.close()


if __name__ == "__main__":
    if len(sys.argv) not in (5, 7):
        sys.exit("usage: oauth_client.py MCP_URL MODE TOOL JSON_ARGS [THEN_TOOL THEN_JSON_ARGS]")
    then = (sys.argv[5], json.loads(sys.argv[6])) if len(sys.argv) == 7 else None
    run = main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), then)
    asyncio.run(asyncio.wait_for(run, 90))
