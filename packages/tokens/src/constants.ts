/** JOSE `typ` header of a link token (explicit typing, RFC 8725 §3.11). */
export const TOKEN_TYP = "pbl+jwt";
/** The only audience a link token is minted for. */
export const TOKEN_AUDIENCE = "phaselock-gateway";
/** The only signature algorithm issued or accepted (Ed25519). */
export const TOKEN_ALG = "EdDSA";
/** Longer tokens are refused before any parsing; real ones are well under 1 KiB. */
export const MAX_TOKEN_LENGTH = 4096;
