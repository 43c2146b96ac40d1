// A real OpenID Connect provider for the sign-in tests: panva's certified
// `oidc-provider`, with one confidential client, PKCE required, and a login page of its
// own (any login; the account's e-mail is `<login>@<domain>` and its name the login,
// capitalised) that grants the client's scopes without a consent screen, as an
// organisation's own identity provider does for its own services. Nothing here reaches
// beyond loopback.
//
//   node provider.mjs <port> <client_id> <client_secret> <redirect_uri> [domain] [directory.json]
//
// The directory (a JSON object keyed by login) gives accounts claims of their own, over
// the defaults: an organisation (`schacHomeOrganization`), roles
// (`eduPersonAffiliation`), `groups`, another e-mail address. The ID token carries only
// what OpenID Connect puts there (`sub`, with the standard token claims): e-mail, name
// and the rest come from the userinfo endpoint, as from Feide.
//
// For the tests of refused tokens it also answers `POST /test/sign` (a JSON claims set
// in the body): an ID token signed with the provider's own key, so that a test can make
// an expired one that is otherwise genuine.
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, clientId, clientSecret, redirectUri, domain = 'uni.no', directoryFile] = process.argv.slice(2);
if (!redirectUri) {
  console.error('usage: node provider.mjs <port> <client_id> <client_secret> <redirect_uri> [domain]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const kid = 'test-key-1';
const jwk = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };

const directory = directoryFile ? JSON.parse(fs.readFileSync(directoryFile, 'utf8')) : {};
const claimsOf = (login) => ({
  sub: login,
  email: `${login}@${domain}`,
  email_verified: true,
  name: login.charAt(0).toUpperCase() + login.slice(1),
  ...(directory[login] || {}),
});

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => claimsOf(sub) }),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    affiliation: ['schacHomeOrganization', 'eduPersonAffiliation'],
    groups: ['groups'],
  },
  // Claims of the scopes go to userinfo only, not into the ID token (the client must
  // read userinfo).
  conformIdTokenClaims: true,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['fjord-test-provider-cookies'] },
});

const page = (uid) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Test identity provider</h1>
<form method="post" action="/interaction/${uid}/login">
<label>Login <input name="login" autofocus required></label>
<label>Password <input name="password" type="password" required></label>
<button type="submit" id="sign-in">Sign in</button></form></body></html>`;

const body = (req) => new Promise((resolve, reject) => {
  let data = '';
  req.on('data', (c) => { data += c; if (data.length > 65536) req.destroy(); });
  req.on('end', () => resolve(data));
  req.on('error', reject);
});

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const login = url.pathname.match(/^\/interaction\/([^/]+)\/login$/);
    const interaction = url.pathname.match(/^\/interaction\/([^/]+)$/);
    if (req.method === 'POST' && url.pathname === '/test/sign') {
      const claims = JSON.parse(await body(req));
      const token = await new jose.SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).sign(privateKey);
      res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
    } else if (login && req.method === 'POST') {
      const form = new URLSearchParams(await body(req));
      const account = (form.get('login') || '').trim().toLowerCase();
      if (!/^[a-z0-9.-]{1,40}$/.test(account)) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('login: letters and digits');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
    } else if (interaction && req.method === 'GET') {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(details.uid));
        return;
      }
      // Consent: the organisation's own service gets what it asked for.
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    } else {
      callback(req, res);
    }
  } catch (e) {
    console.error(e);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e));
  }
});
server.listen(Number(port), '127.0.0.1', () => console.log(`oidc provider ${issuer} ready`));
