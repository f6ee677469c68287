/**
 * Golden vectors shared by the protocol tests.
 */

/**
 * A signed message. GOLDEN_SIGNATURE was derived once with Python's standard library,
 * `hmac.new(GOLDEN_KEY, digestmod=hashlib.sha256)` updated with each part in order, `.hexdigest()`;
 * signing.test.ts checks it again with node:crypto, independently of Signer.
 */
export const GOLDEN_KEY = 'a0436f6c-1916-498b-8eb9-e81ab9368e84';
export const GOLDEN_PARTS = [
  '{"msg_id":"a1","session":"s1","username":"u","date":"2024-01-01T00:00:00.000Z","msg_type":"execute_request","version":"5.3"}',
  '{}',
  '{}',
  '{"code":"1+1","silent":false}',
].map((p) => Buffer.from(p, 'utf8'));
export const GOLDEN_SIGNATURE = 'cfd547932be1f148df6bf1b40beddd241a1651022706ea598fd84b9ac0f7eac3';
