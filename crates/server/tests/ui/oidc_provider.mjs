// A real OpenID provider for the single sign-on browser test: node's oidc-provider with its
// development sign-in pages (any login, any password), on a loopback port.
//
// Environment:
//   OIDC_PROVIDER_MODULE  file URL of oidc-provider's lib/index.js
//   PORT                  the port to listen on (127.0.0.1)
//   REDIRECT_URI          Cardwright's callback
//   ACCOUNTS              a JSON file {"login": {"groups": [...]}}, read at every sign-in, so a
//                         test can change a person's groups between sign-ins
//
// Prints "ready" once it listens.

import { readFileSync } from 'node:fs';

const { default: Provider } = await import(process.env.OIDC_PROVIDER_MODULE);
const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

function accounts() {
  return JSON.parse(readFileSync(process.env.ACCOUNTS, 'utf8'));
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'cardwright',
      client_secret: 'cardwright-test-secret',
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  cookies: { keys: ['cardwright-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const person = accounts()[id];
    if (!person) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          email: `${id}@example.org`,
          groups: accounts()[id]?.groups ?? [],
        };
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log('ready');
});
