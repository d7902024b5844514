/**
 * Generated Markdown is formatted exactly as `deno fmt` keeps it, so `deno fmt --check` (part of
 * `make test`) and the staleness checks of the generators agree byte for byte.
 * @module
 */

const root = new URL("../", import.meta.url);

/** `text` in deno fmt's Markdown style (the project's deno.json settings). */
export async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    stdin: "piped",
    stdout: "piped",
    cwd: root.pathname,
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  if (!output.success) throw new Error("deno fmt could not format the generated Markdown");
  return new TextDecoder().decode(output.stdout);
}
