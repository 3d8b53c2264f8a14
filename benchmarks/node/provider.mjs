// node-oidc-provider as the peer of `python benchmarks/run.py tokens`.
//
// Usage: node provider.mjs CONFIG.json   (written by benchmarks/tokens.py)
// CONFIG: {"host", "port", "issuer", "jwks": {"keys": [private ES256 JWK]}, "clients": [...],
//          "resources": {"<resource indicator>": "jwt" | "opaque"}, "scope": "...",
//          "introspectors": {"<client_id>": "<resource it may introspect for>"},
//          "access_token_ttl": 300}
//
// Same grant and client authentication as authz: client_credentials with private_key_jwt
// (ES256 only), access tokens bound to an RFC 8707 resource indicator, 5 minutes. JWT access
// tokens (accessTokenFormat 'jwt') for the token measurement; oidc-provider refuses to
// introspect structured tokens (lib/shared/reject_structured_tokens.js), so introspection is
// measured on opaque tokens of a second resource indicator. Storage is the default in-memory
// adapter (one process, an LRU of 1000 entries). Prints "ready <url>" on stderr when listening.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const resources = new Map(Object.entries(config.resources));
const introspectors = new Map(Object.entries(config.introspectors));

const provider = new Provider(config.issuer, {
  clients: config.clients,
  scopes: ['openid', ...config.scope.split(' ')],
  jwks: config.jwks,
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['ES256'],
    idTokenSigningAlgValues: ['ES256'],
  },
  clientDefaults: {
    id_token_signed_response_alg: 'ES256',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL
      ?? config.access_token_ttl,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // As authz: a resource server learns about a token only when it is in its audience.
      allowedPolicy(ctx, client, token) {
        const resource = introspectors.get(client.clientId);
        const audience = [token.aud ?? []].flat();
        return resource !== undefined && audience.includes(resource);
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf,
      useGrantedResource: () => false,
      getResourceServerInfo(ctx, resourceIndicator) {
        const format = resources.get(resourceIndicator);
        if (!format) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: config.scope,
          audience: resourceIndicator,
          accessTokenTTL: config.access_token_ttl,
          accessTokenFormat: format,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

// Client errors are answered; nothing is logged per request.
provider.on('server_error', (ctx, error) => {
  process.stderr.write(`server_error ${error.stack}\n`);
});

const server = provider.listen(config.port, config.host, () => {
  process.stderr.write(`ready ${config.issuer}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
