// Copyright 2026 the @corothread/evthread authors. MIT license.
// A Request that builds its parts only when asked. Constructing a native
// Request with its Headers costs about 3 us in Deno 2.9.6, more than the
// rest of a hello-world exchange; most handlers read one or two members.

/** What the server knows about a request when it calls the handler. */
export interface RequestSource {
  method: string;
  /** The request target as sent (origin-form, absolute-form, ...). */
  target: string;
  /** The Host field, or the server's own address. */
  host: string;
  /** Whether the connection is TLS: the URL is then `https:`. */
  secure: boolean;
  /** Field names (lower case) and values, flat. */
  fields: string[];
  /** The body, or null when the request has none. */
  body: ReadableStream<Uint8Array> | null;
  /** Called the first time `signal` is read; returns the signal. */
  signal: () => AbortSignal;
}

/** The URL of a request, from its target and Host. */
export function requestUrl(
  target: string,
  host: string,
  secure = false,
): string {
  const scheme = secure ? "https://" : "http://";
  if (target.charCodeAt(0) === 0x2f) return `${scheme}${host}${target}`; // "/"
  if (/^https?:\/\//i.test(target)) return target;
  if (target === "*") return `${scheme}${host}/*`;
  return `${scheme}${target}/`; // authority-form (CONNECT)
}

// A Host that every URL parser takes as it is: dot-separated labels, the
// last starting with a letter (a last label that is a number makes the
// parser read an IPv4 address), none an IDNA "xn--" label (which must be
// valid punycode); or a dotted IPv4 address; then an optional port.
const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const PLAIN_HOST = new RegExp(
  "^(?:(?:(?![xX][nN]--)[A-Za-z0-9-]+\\.)*(?![xX][nN]--)[A-Za-z][A-Za-z0-9-]*" +
    `|(?:${OCTET}\\.){3}${OCTET})(?::([0-9]{1,5}))?$`,
);

/**
 * Whether a request's URL, made from its target and `host` (its Host field,
 * or the server's own address), is valid. Plain cases are decided by a
 * pattern; the rest (IP literals, percent signs, names ending in a number,
 * IDNA labels, absolute-form targets, ...) by the URL parser. `hostField`
 * is the Host field as sent: RFC 9112 3.2 wants a 400 for an invalid one
 * even when an absolute-form target makes the URL.
 */
export function validRequestUrl(
  target: string,
  host: string,
  hostField: string,
  secure: boolean,
): boolean {
  if (hostField !== "" && !plainHost(hostField)) {
    if (!URL.canParse(`http://${hostField}/`)) return false;
  }
  if (target.charCodeAt(0) === 0x2f && plainHost(host)) return true;
  return URL.canParse(requestUrl(target, host, secure));
}

// The last host checked: a connection's requests carry the same one.
let lastHost = "";
let lastPlain = false;

function plainHost(host: string): boolean {
  if (host === lastHost) return lastPlain;
  const match = PLAIN_HOST.exec(host);
  lastHost = host;
  lastPlain = match !== null &&
    (match[1] === undefined || Number(match[1]) <= 65_535);
  return lastPlain;
}

/** Calls a body method of a Response built over this request's body. */
function viaResponse<T>(
  request: HttpRequest,
  read: (response: Response) => Promise<T>,
): Promise<T> {
  try {
    const body = request.takeBody();
    const contentType = request.headers.get("content-type");
    const init = contentType === null
      ? undefined
      : { headers: { "content-type": contentType } };
    return read(new Response(body, init));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * The server's requests. `instanceof Request` holds and every member of
 * Request works; parts are built on first use. Where the runtime needs a
 * native Request object (such as `fetch(request)`), pass `request.clone()`,
 * which returns one.
 */
export class HttpRequest {
  #source: RequestSource;
  #url: string | undefined;
  #headers: Headers | undefined;
  #signal: AbortSignal | undefined;
  #bodyUsed = false;

  constructor(source: RequestSource) {
    this.#source = source;
  }

  get method(): string {
    return this.#source.method;
  }

  get url(): string {
    this.#url ??= requestUrl(
      this.#source.target,
      this.#source.host,
      this.#source.secure,
    );
    return this.#url;
  }

  get headers(): Headers {
    if (this.#headers === undefined) {
      const headers = new Headers();
      const fields = this.#source.fields;
      for (let i = 0; i < fields.length; i += 2) {
        headers.append(fields[i]!, fields[i + 1]!);
      }
      this.#headers = headers;
    }
    return this.#headers;
  }

  get signal(): AbortSignal {
    this.#signal ??= this.#source.signal();
    return this.#signal;
  }

  get body(): ReadableStream<Uint8Array> | null {
    return this.#source.body;
  }

  get bodyUsed(): boolean {
    return this.#bodyUsed || (this.#source.body?.locked ?? false);
  }

  /** Internal: the body, marked used; throws if it was used already. */
  takeBody(): ReadableStream<Uint8Array> | null {
    if (this.bodyUsed) throw new TypeError("Body already consumed");
    this.#bodyUsed = true;
    return this.#source.body;
  }

  get redirect(): RequestRedirect {
    return "follow";
  }
  get cache(): RequestCache {
    return "default";
  }
  get credentials(): RequestCredentials {
    return "same-origin";
  }
  get integrity(): string {
    return "";
  }
  get keepalive(): boolean {
    return false;
  }
  get mode(): RequestMode {
    return "cors";
  }
  get referrer(): string {
    return "about:client";
  }
  get referrerPolicy(): ReferrerPolicy {
    return "";
  }

  arrayBuffer(): Promise<ArrayBuffer> {
    return viaResponse(this, (r) => r.arrayBuffer());
  }
  blob(): Promise<Blob> {
    return viaResponse(this, (r) => r.blob());
  }
  bytes(): Promise<Uint8Array<ArrayBuffer>> {
    return viaResponse(this, (r) => r.bytes());
  }
  formData(): Promise<FormData> {
    return viaResponse(this, (r) => r.formData());
  }
  json(): Promise<unknown> {
    return viaResponse(this, (r) => r.json());
  }
  text(): Promise<string> {
    return viaResponse(this, (r) => r.text());
  }
  textStream(): ReadableStream<string> {
    const body = this.takeBody() ?? ReadableStream.from([]);
    return body.pipeThrough(new TextDecoderStream());
  }

  /**
   * A native Request with the same method, URL, headers and signal. Its
   * body is a tee of this one's: both can be read.
   */
  clone(): Request {
    if (this.bodyUsed) throw new TypeError("Body already consumed");
    let body: ReadableStream<Uint8Array> | null = null;
    const source = this.#source;
    if (source.body !== null) {
      const [a, b] = source.body.tee();
      source.body = a;
      body = b;
    }
    const method = this.method;
    return new Request(this.url, {
      method,
      headers: this.headers,
      body: method === "GET" || method === "HEAD" ? null : body,
      signal: this.signal,
    });
  }

  [Symbol.for("Deno.customInspect")](): string {
    return `HttpRequest { method: ${JSON.stringify(this.method)}, url: ${
      JSON.stringify(this.url)
    } }`;
  }
}

// Requests pass `instanceof Request`; every member above shadows Request's.
Object.setPrototypeOf(HttpRequest.prototype, Request.prototype);
Object.defineProperty(HttpRequest.prototype, Symbol.toStringTag, {
  value: "Request",
  configurable: true,
});
