// A real OpenID provider (oidc-provider) for Warrant's end-to-end tests, on loopback.
//
//   node oidc_provider.mjs
//
// Listens on 127.0.0.1 (port 0 unless OIDC_PORT is set) and prints one JSON line on
// stdout once it serves: {"issuer":"http://127.0.0.1:PORT"}.
//
// Configuration (environment):
// It stops when its stdin closes (the test harness holds it open), or on SIGTERM.
//
//   OIDC_CLIENT    JSON {"client_id","client_secret","redirect_uris":[…],
//                  "post_logout_redirect_uris":[…]}. When absent, the script reads that JSON
//                  from the first line of stdin after printing the issuer (a test that
//                  needs the issuer in the relying party's own configuration before it
//                  knows its redirect URI), then prints {"ready":true}.
//   OIDC_ACCOUNTS  JSON {"<sub>": {"email", "email_verified", "name", "groups": […]}, …}:
//                  the accounts that can sign in (any password).
//   OIDC_ID_TOKEN_CLAIMS  "full": the ID token carries every granted claim (email, name,
//                  groups); default "minimal": those claims come from userinfo only.
//   OIDC_NO_LOGOUT  "1": no RP-initiated logout (no end_session_endpoint published).
//   OIDC_TOKEN_EXCHANGE  "1": the token endpoint also takes RFC 8693 token exchange from
//                  the registered client: `subject_token` (an access token this provider
//                  issued to that client, still valid) and `audience` give a JWT signed
//                  with the provider's key: iss, sub, aud = audience, email, client_id,
//                  iat, exp (5 minutes), as `issued_token_type` access_token. An unknown or
//                  expired subject token is `invalid_grant`.
//   OIDC_MISBEHAVE  test-only switch that rewrites the ID token the token endpoint returns:
//                  "wrong-audience" (aud = another client, re-signed with the provider's own
//                  key), "wrong-nonce" (nonce changed, re-signed), "bad-signature" (signed
//                  with another key under the provider's key id), "expired" (exp in the
//                  past, re-signed).
//
// Interactions are minimal HTML forms the tests drive over plain HTTP:
//   GET  /interaction/:uid          -> a login form (prompt=login) or a consent form
//   POST /interaction/:uid/login    login=<sub>  -> back to the authorization endpoint
//   POST /interaction/:uid/confirm               -> consent granted, back again
//   POST /interaction/:uid/abort                 -> error=access_denied to the client
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID, sign as rsaSign } from 'node:crypto';

import Provider from 'oidc-provider';

const env = process.env;
const accounts = JSON.parse(env.OIDC_ACCOUNTS || '{}');
const misbehave = env.OIDC_MISBEHAVE || '';
const fullIdToken = env.OIDC_ID_TOKEN_CLAIMS === 'full';
const KID = 'warrant-test-key';

// The provider's signing key, generated here so that misbehaviour can re-sign with it.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: KID, use: 'sig', alg: 'RS256' };
const { privateKey: strangerKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const decode = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function resign(token, change, key = privateKey) {
  const [h, p] = token.split('.');
  const header = decode(h);
  const payload = change(decode(p));
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  return `${input}.${b64url(rsaSign('sha256', Buffer.from(input), key))}`;
}

function tamper(idToken) {
  switch (misbehave) {
    case 'wrong-audience':
      return resign(idToken, (c) => ({ ...c, aud: 'someone-else', azp: undefined }));
    case 'wrong-nonce':
      return resign(idToken, (c) => ({ ...c, nonce: 'not-the-nonce-you-sent' }));
    case 'bad-signature':
      return resign(idToken, (c) => c, strangerKey);
    case 'expired': {
      const now = Math.floor(Date.now() / 1000);
      return resign(idToken, (c) => ({ ...c, iat: now - 7200, exp: now - 3600 }));
    }
    default:
      return idToken;
  }
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(data)));
    req.on('error', reject);
  });
}

// The first line of stdin; stdin stays open afterwards, and its end stops the provider.
const firstLine = new Promise((resolve, reject) => {
  let buffered = '';
  let done = false;
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    if (done) return;
    buffered += chunk;
    const newline = buffered.indexOf('\n');
    if (newline >= 0) {
      done = true;
      resolve(buffered.slice(0, newline));
    }
  });
  process.stdin.on('end', () => {
    if (!done) reject(new Error('stdin closed before the client configuration arrived'));
    process.exit(0);
  });
});
firstLine.catch(() => {});

async function readClient() {
  if (env.OIDC_CLIENT) return JSON.parse(env.OIDC_CLIENT);
  return JSON.parse(await firstLine);
}

function buildProvider(issuer, client) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      token_endpoint_auth_method: client.client_secret ? 'client_secret_basic' : 'none',
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris || [],
      grant_types: env.OIDC_TOKEN_EXCHANGE === '1'
        ? ['authorization_code', TOKEN_EXCHANGE]
        : ['authorization_code'],
      response_types: ['code'],
    }],
    jwks: { keys: [signingJwk] },
    cookies: { keys: ['warrant-test-cookie-key-not-secret'] },
    pkce: { required: () => true },
    conformIdTokenClaims: !fullIdToken,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: env.OIDC_NO_LOGOUT !== '1' },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const account = accounts[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const claims = { sub };
          for (const key of ['email', 'email_verified', 'name', 'groups']) {
            if (account[key] !== undefined) claims[key] = account[key];
          }
          return claims;
        },
      };
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('OpenID provider error', `<pre>${escape(JSON.stringify(out))}</pre>`);
    },
  });
  provider.proxy = false;
  if (env.OIDC_TOKEN_EXCHANGE === '1') {
    provider.registerGrantType(TOKEN_EXCHANGE, exchangeHandler(provider, issuer), [
      'subject_token', 'subject_token_type', 'audience', 'requested_token_type', 'resource',
    ]);
  }

  // The minimal interactions.
  provider.use(async (ctx, next) => {
    const match = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
    if (!match) return next();
    const [, uid, action] = match;
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');
    const { prompt, params, session } = details;
    if (ctx.method === 'GET' && !action) {
      ctx.type = 'html';
      if (prompt.name === 'login') {
        ctx.body = page('Sign in', `<form method="post" action="/interaction/${uid}/login">`
          + '<input name="login" autofocus><input name="password" type="password">'
          + '<button type="submit">Sign in</button></form>');
      } else {
        ctx.body = page('Authorize', `<p>${escape(params.client_id)} asks for ${escape(params.scope)}</p>`
          + `<form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>`
          + `<form method="post" action="/interaction/${uid}/abort"><button type="submit">Deny</button></form>`);
      }
      return undefined;
    }
    if (ctx.method !== 'POST' || !action) ctx.throw(405);
    let result;
    if (action === 'login') {
      const form = await readForm(ctx.req);
      const login = form.get('login') || '';
      if (!accounts[login]) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = page('Sign in', '<p>Unknown account.</p>');
        return undefined;
      }
      result = { login: { accountId: login } };
    } else if (action === 'confirm') {
      let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
      if (!grant) {
        grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      }
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      result = { error: 'access_denied', error_description: 'The person declined the request.' };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: false,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return undefined;
  });

  // Test-only misbehaviour of the token endpoint.
  provider.use(async (ctx, next) => {
    await next();
    if (misbehave && ctx.oidc?.route === 'token' && ctx.status === 200 && ctx.body?.id_token) {
      ctx.body = { ...ctx.body, id_token: tamper(ctx.body.id_token) };
    }
  });
  return provider;
}

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// RFC 8693: a valid access token this provider issued to the calling client, for a JWT
// meant for `audience`.
function exchangeHandler(provider, issuer) {
  return async (ctx) => {
    const { params, client } = ctx.oidc;
    const refuse = (error, description) => {
      ctx.status = 400;
      ctx.body = { error, error_description: description };
    };
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      refuse('invalid_request', 'subject_token_type must be an access token');
      return;
    }
    if (!params.audience) {
      refuse('invalid_target', 'an audience is required');
      return;
    }
    const subject = await provider.AccessToken.find(params.subject_token);
    if (!subject || subject.isExpired || subject.clientId !== client.clientId) {
      refuse('invalid_grant', 'the subject token is not valid');
      return;
    }
    const account = accounts[subject.accountId] || {};
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', kid: KID, typ: 'JWT' };
    const payload = {
      iss: issuer,
      sub: subject.accountId,
      aud: params.audience,
      email: account.email,
      client_id: client.clientId,
      jti: randomUUID(),
      iat: now,
      exp: now + 300,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
    const jwt = `${input}.${b64url(rsaSign('sha256', Buffer.from(input), privateKey))}`;
    ctx.body = {
      access_token: jwt,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: 300,
    };
  };
}

let handler = (req, res) => {
  res.statusCode = 503;
  res.end('not ready');
};
const server = createServer((req, res) => handler(req, res));
const port = Number(env.OIDC_PORT || 0);
server.listen(port, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
  try {
    const client = await readClient();
    const provider = buildProvider(issuer, client);
    handler = provider.callback();
    if (!env.OIDC_CLIENT) {
      process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
    }
  } catch (e) {
    process.stderr.write(`oidc_provider: ${e.stack || e}\n`);
    process.exit(1);
  }
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
