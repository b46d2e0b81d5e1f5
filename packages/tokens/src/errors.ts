/** Stable codes of {@link TokenKeyError}. */
export type TokenKeyErrorCode =
  | "kek_invalid"
  | "key_blob_malformed"
  | "key_decryption_failed"
  | "jwk_invalid"
  | "claims_invalid";

/**
 * A problem with key material or with claims handed to the signer: configuration or a bug, never
 * a refused request. Messages never contain key bytes or tokens.
 */
export class TokenKeyError extends Error {
  readonly code: TokenKeyErrorCode;
  constructor(code: TokenKeyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenKeyError";
    this.code = code;
  }
}
