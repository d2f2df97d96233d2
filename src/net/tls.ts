/** How a client checks a server's certificate: against the system's CAs, a given CA, or not at all. */
export interface TlsOptions {
  insecure: boolean;
  ca?: string | Buffer;
}
