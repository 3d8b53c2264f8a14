// A small driver for panva's openid-client (certified OpenID Connect relying party library),
// steered by tests/oauth/test_certified_clients.py over stdin/stdout, one JSON object a line.
//
// Request:  {"id": 1, "op": "discover", ...}
// Answer:   {"id": 1, "ok": true, "result": {...}}
//       or  {"id": 1, "ok": false, "error": {"name", "message", "code", "error", "status", ...}}
//
// Every protocol check is openid-client's own: the test only plays the browser and looks at
// what the library accepted or refused. Nothing here relaxes a check, except
// allowInsecureRequests, which the loopback http:// issuer needs.

import * as readline from 'node:readline';
import * as client from 'openid-client';

const configs = new Map(); // name -> {config, dpop, assertions}
const flows = new Map(); // name -> {verifier, state, nonce, maxAge, dpop}

function entry(name) {
  const found = configs.get(name);
  if (!found) throw new Error(`no configuration named ${name}; discover first`);
  return found;
}

function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

function jwtParts(token) {
  if (typeof token !== 'string' || token.split('.').length !== 3) return null;
  const [header, payload] = token.split('.');
  return { header: decodeSegment(header), payload: decodeSegment(payload) };
}

function plainTokens(response) {
  const picked = {};
  for (const name of ['access_token', 'token_type', 'expires_in', 'refresh_token', 'id_token',
    'scope', 'authorization_details']) {
    if (response[name] !== undefined) picked[name] = response[name];
  }
  return picked;
}

function dpopOptions(dpop) {
  return dpop ? { DPoP: dpop } : undefined;
}

const ops = {
  async discover(cmd) {
    let auth;
    const assertions = [];
    if (cmd.auth === 'private_key_jwt') {
      const key = await crypto.subtle.importKey(
        'jwk', cmd.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      // modifyAssertion only records what openid-client sends by default; it changes nothing.
      auth = client.PrivateKeyJwt({ key, kid: cmd.jwk.kid }, {
        [client.modifyAssertion]: (header, payload) => {
          assertions.push({ header: { ...header }, payload: { ...payload } });
        },
      });
    } else {
      auth = client.None();
    }
    const config = await client.discovery(
      new URL(cmd.issuer), cmd.client_id, cmd.metadata ?? {}, auth,
      { execute: [client.allowInsecureRequests] });
    // Verify the ID token's JWS against the issuer's JWKS (openid-client skips the signature of
    // an ID token from the token endpoint unless asked, as OIDC Core 3.1.3.7 allows).
    client.enableNonRepudiationChecks(config);
    let dpop;
    const metadata = config.serverMetadata();
    if (cmd.dpop && metadata.dpop_signing_alg_values_supported) {
      dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
    }
    configs.set(cmd.name, { config, dpop, assertions });
    return { metadata, dpop: Boolean(dpop) };
  },

  async authorize(cmd) {
    const { config, dpop } = entry(cmd.config);
    const verifier = client.randomPKCECodeVerifier();
    const parameters = {
      redirect_uri: cmd.redirect_uri,
      scope: cmd.scope,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: client.randomState(),
      nonce: client.randomNonce(),
      ...(cmd.parameters ?? {}),
    };
    const url = cmd.par
      ? await client.buildAuthorizationUrlWithPAR(config, parameters, dpopOptions(dpop))
      : client.buildAuthorizationUrl(config, parameters);
    flows.set(cmd.flow, {
      verifier, state: parameters.state, nonce: parameters.nonce,
      maxAge: parameters.max_age === undefined ? undefined : Number(parameters.max_age),
    });
    return { url: url.href, state: parameters.state, nonce: parameters.nonce };
  },

  async callback(cmd) {
    const { config, dpop } = entry(cmd.config);
    const flow = flows.get(cmd.flow);
    if (!flow) throw new Error(`no flow named ${cmd.flow}`);
    const tokens = await client.authorizationCodeGrant(config, new URL(cmd.url), {
      pkceCodeVerifier: flow.verifier,
      expectedState: flow.state,
      expectedNonce: flow.nonce,
      idTokenExpected: true,
      maxAge: flow.maxAge,
    }, cmd.parameters, dpopOptions(dpop));
    const idToken = jwtParts(tokens.id_token);
    return {
      tokens: plainTokens(tokens),
      claims: tokens.claims(),
      id_token_header: idToken && idToken.header,
      access_token: jwtParts(tokens.access_token),
    };
  },

  async refresh(cmd) {
    const { config, dpop } = entry(cmd.config);
    const tokens = await client.refreshTokenGrant(
      config, cmd.refresh_token, cmd.parameters, dpopOptions(dpop));
    return { tokens: plainTokens(tokens), access_token: jwtParts(tokens.access_token) };
  },

  async revoke(cmd) {
    const { config } = entry(cmd.config);
    await client.tokenRevocation(config, cmd.token, cmd.parameters);
    return {};
  },

  async userinfo(cmd) {
    const { config, dpop } = entry(cmd.config);
    return client.fetchUserInfo(config, cmd.access_token, cmd.subject, dpopOptions(dpop));
  },

  async client_credentials(cmd) {
    const { config, dpop } = entry(cmd.config);
    const tokens = await client.clientCredentialsGrant(
      config, cmd.parameters, dpopOptions(dpop));
    return { tokens: plainTokens(tokens), access_token: jwtParts(tokens.access_token) };
  },

  async introspect(cmd) {
    const { config } = entry(cmd.config);
    return client.tokenIntrospection(config, cmd.token, cmd.parameters);
  },

  async assertions(cmd) {
    return entry(cmd.config).assertions;
  },
};

function describe(error) {
  const described = {
    name: error?.name, message: error?.message, code: error?.code,
    error: error?.error, error_description: error?.error_description, status: error?.status,
  };
  const { cause } = error ?? {};
  if (cause instanceof Error) {
    described.cause = { name: cause.name, message: cause.message, code: cause.code };
  } else if (cause instanceof URLSearchParams) {
    described.cause = Object.fromEntries(cause); // an authorization response's parameters
  } else if (cause !== undefined) {
    described.cause = cause;
  }
  return described;
}

function serialise(answer) {
  try {
    return JSON.stringify(answer);
  } catch (failure) { // e.g. a circular cause: keep the answer, drop the detail
    return JSON.stringify({ id: answer.id, ok: false, error: { message: String(failure) } });
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let cmd = {};
  let answer;
  try {
    cmd = JSON.parse(line);
    const op = ops[cmd.op];
    if (!op) throw new Error(`unknown op ${cmd.op}`);
    answer = { id: cmd.id, ok: true, result: (await op(cmd)) ?? {} };
  } catch (error) {
    answer = { id: cmd.id, ok: false, error: describe(error) };
  }
  process.stdout.write(`${serialise(answer)}\n`);
}
