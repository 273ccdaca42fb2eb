// Copyright 2026 the @corothread/evthread authors. MIT license.
// A child `deno` process for the example tests: spawned in the repository
// root, its stdout read line by line (tests wait for a line to match), its
// stderr collected, and stopped on dispose with SIGTERM, then SIGKILL if it
// outlives a safety timeout. Also, for other tests' child processes:
// LineReader, the line splitting it reads stdout with, and readText.

import { within } from "./_helpers.ts";

/** The repository root, where the children run. */
export const ROOT: string = new URL("../", import.meta.url).pathname;

/** The most any single wait on a child may take. */
export const CHILD_SAFETY_MS = 20_000;

const encoder = new TextEncoder();

/**
 * Reads a stream as UTF-8 text and calls `onLine` with each line (without
 * its "\n") as it completes. What follows the last "\n" stays in `rest`,
 * for the caller to take or drop once the stream has ended or failed.
 */
export class LineReader {
  /** The text after the last "\n" read so far. */
  rest = "";
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  /** Reads `stream` to its end; rejects if reading it or `onLine` fails. */
  async read(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      this.rest += text;
      let eol;
      while ((eol = this.rest.indexOf("\n")) >= 0) {
        this.#onLine(this.rest.slice(0, eol));
        this.rest = this.rest.slice(eol + 1);
      }
    }
  }
}

/**
 * Calls `onText` with the text of `stream` as it comes, until the stream
 * ends or its pipe breaks with the process.
 */
export async function readText(
  stream: ReadableStream<Uint8Array>,
  onText: (text: string) => void,
): Promise<void> {
  try {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      onText(text);
    }
  } catch {
    // The pipe broke with the process.
  }
}

interface Waiter {
  pattern: RegExp;
  resolve: (match: RegExpMatchArray) => void;
  reject: (error: Error) => void;
}

/** A `deno` child process, its output read line by line. */
export class DenoProcess implements AsyncDisposable {
  readonly name: string;
  /** Lines of stdout so far. */
  readonly lines: string[] = [];
  /** All of stderr, once the process has exited. */
  stderr = "";
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #exited = false;
  #stdoutDone: Promise<void>;
  #stderrDone: Promise<void>;
  #stdinDone: Promise<void>;
  #waiters: Waiter[] = [];
  #ended = false;

  /**
   * Runs `deno ...args` in the repository root with `NO_COLOR`; `stdin`, if
   * given, is written to the child's stdin, which is then closed.
   */
  constructor(name: string, args: string[], stdin?: string) {
    this.name = name;
    this.#child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stdinDone = stdin === undefined
      ? Promise.resolve()
      : this.#writeStdin(stdin);
    this.#stdoutDone = this.#readLines();
    this.#stderrDone = this.#readStderr();
  }

  async #writeStdin(text: string): Promise<void> {
    const writer = this.#child.stdin.getWriter();
    try {
      await writer.write(encoder.encode(text));
      await writer.close();
    } catch {
      // The process exited without reading it all.
    }
  }

  async #readLines(): Promise<void> {
    const reader = new LineReader((line) => this.#addLine(line));
    try {
      await reader.read(this.#child.stdout);
      if (reader.rest !== "") this.#addLine(reader.rest);
    } finally {
      this.#ended = true;
      for (const waiter of this.#waiters.splice(0)) {
        waiter.reject(
          new Error(
            `${this.name} ended its output without a line matching ${waiter.pattern}; stdout:\n${
              this.lines.join("\n")
            }`,
          ),
        );
      }
    }
  }

  async #readStderr(): Promise<void> {
    for await (
      const text of this.#child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      this.stderr += text;
    }
  }

  #addLine(line: string): void {
    this.lines.push(line);
    this.#waiters = this.#waiters.filter((waiter) => {
      const match = line.match(waiter.pattern);
      if (match !== null) waiter.resolve(match);
      return match === null;
    });
  }

  /** Waits for a line of stdout (printed already, or to come) to match. */
  line(pattern: RegExp, ms = CHILD_SAFETY_MS): Promise<RegExpMatchArray> {
    for (const line of this.lines) {
      const match = line.match(pattern);
      if (match !== null) return Promise.resolve(match);
    }
    if (this.#ended) {
      return Promise.reject(
        new Error(
          `${this.name} printed no line matching ${pattern}; stderr:\n${this.stderr}`,
        ),
      );
    }
    return within(
      new Promise((resolve, reject) => {
        this.#waiters.push({ pattern, resolve, reject });
      }),
      `${this.name} to print a line matching ${pattern}`,
      ms,
    );
  }

  /** Sends a signal, unless the process has exited. */
  kill(signal: Deno.Signal): void {
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It exited meanwhile.
    }
  }

  /** Waits for the process to exit and for all its output. */
  async exit(ms = CHILD_SAFETY_MS): Promise<{ code: number; stdout: string }> {
    const status = await within(this.#status, `${this.name} to exit`, ms);
    await this.#drained();
    return { code: status.code, stdout: this.lines.join("\n") };
  }

  async #drained(): Promise<void> {
    await Promise.all([this.#stdoutDone, this.#stderrDone, this.#stdinDone]);
  }

  /** SIGTERM, then SIGKILL after the safety timeout; waits for the end. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.kill("SIGTERM");
    try {
      await within(this.#status, `${this.name} to exit`, CHILD_SAFETY_MS);
    } catch {
      this.kill("SIGKILL");
      await this.#status;
    }
    await this.#drained();
  }
}
