/**
 * The import graph, as `deno info --json` resolves it from every entry point: no module imports itself
 * through others, and every role's decision machine is a leaf (its decisions depend on no adapter, not
 * even through a type).
 */
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

interface InfoModule {
  readonly specifier: string;
  readonly dependencies?: ReadonlyArray<
    { readonly code?: { specifier: string }; readonly type?: { specifier: string } }
  >;
}

/** Project module -> the project modules it imports (code or type, static or dynamic), keyed by path from the root. */
type ImportGraph = Map<string, Set<string>>;

function projectPath(specifier: string): string | undefined {
  return specifier.startsWith(root.href) ? specifier.slice(root.href.length) : undefined;
}

async function importGraph(entries: readonly string[]): Promise<ImportGraph> {
  const graph: ImportGraph = new Map();
  for (const entry of entries) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", entry],
      cwd: root.pathname,
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(out.code, 0, `deno info ${entry}: ${new TextDecoder().decode(out.stderr)}`);
    const { modules } = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
    for (const module of modules) {
      const from = projectPath(module.specifier);
      if (from === undefined) continue;
      const targets = graph.get(from) ?? new Set<string>();
      for (const dependency of module.dependencies ?? []) {
        for (const resolved of [dependency.code, dependency.type]) {
          const to = resolved && projectPath(resolved.specifier);
          if (to !== undefined) targets.add(to);
        }
      }
      graph.set(from, targets);
    }
  }
  return graph;
}

/** One cycle per strongly connected component that has one, each as a path that ends where it starts. */
function importCycles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm: each component with more than one module, or a module importing itself, holds a cycle.
  const index = new Map<string, number>();
  const lowLink = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (module: string) => {
    index.set(module, index.size);
    lowLink.set(module, index.get(module)!);
    stack.push(module);
    onStack.add(module);
    for (const next of graph.get(module) ?? []) {
      if (!index.has(next)) {
        visit(next);
        lowLink.set(module, Math.min(lowLink.get(module)!, lowLink.get(next)!));
      } else if (onStack.has(next)) {
        lowLink.set(module, Math.min(lowLink.get(module)!, index.get(next)!));
      }
    }
    if (lowLink.get(module) !== index.get(module)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== module);
    if (component.length > 1 || graph.get(module)?.has(module)) components.push(component);
  };
  for (const module of [...graph.keys()].sort()) if (!index.has(module)) visit(module);
  return components.map((component) => cycleWithin(graph, new Set(component)));
}

/** A shortest path from the component's first module (by name) back to itself, staying inside the component. */
function cycleWithin(graph: ImportGraph, component: Set<string>): string[] {
  const start = [...component].sort()[0];
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const module = queue.shift()!;
    for (const next of [...graph.get(module) ?? []].sort()) {
      if (!component.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at = module; at !== start; at = cameFrom.get(at)!) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!cameFrom.has(next)) {
        cameFrom.set(next, module);
        queue.push(next);
      }
    }
  }
  throw new Error(`no cycle through ${start}`);
}

async function filesIn(folder: string, pattern: RegExp): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(new URL(folder, root))) {
    if (entry.isFile && pattern.test(entry.name)) found.push(`${folder}${entry.name}`);
  }
  return found.sort();
}

const ENTRY_POINTS = [
  "main.ts",
  "mod.ts",
  ...await filesIn("cmd/", /\.ts$/),
  "sim/main.ts",
  "bench/main.ts",
  "demo/main.ts",
  ...await filesIn("tools/", /\.ts$/),
];

Deno.test("the cycle finder names each cycle as a path and passes over shared imports", () => {
  const graph: ImportGraph = new Map([
    ["a.ts", new Set(["b.ts", "shared.ts"])],
    ["b.ts", new Set(["c.ts", "shared.ts"])],
    ["c.ts", new Set(["a.ts"])],
    ["self.ts", new Set(["self.ts"])],
    ["shared.ts", new Set()],
  ]);
  assert.deepEqual(importCycles(graph), [["a.ts", "b.ts", "c.ts", "a.ts"], ["self.ts", "self.ts"]]);
  assert.deepEqual(importCycles(new Map([["a.ts", new Set(["shared.ts"])], ["shared.ts", new Set()]])), []);
});

Deno.test("no import cycle anywhere in the graph of the entry points", async () => {
  const cycles = importCycles(await importGraph(ENTRY_POINTS));
  assert.deepEqual(
    cycles.map((cycle) => cycle.join(" -> ")),
    [],
    `import cycles:\n${cycles.map((cycle) => `  ${cycle.join(" -> ")}`).join("\n")}`,
  );
});

Deno.test("every role's machine.ts is a leaf: it imports no project module", async () => {
  const roles = [...Deno.readDirSync(new URL("lib/", root))].filter((entry) => entry.isDirectory);
  const machines = (await Promise.all(roles.map((role) => filesIn(`lib/${role.name}/`, /^machine\.ts$/)))).flat()
    .sort();
  assert.ok(machines.length >= 3, `found only ${machines.join(", ")}`);
  const graph = await importGraph(machines);
  const imports = machines.flatMap((machine) => [...graph.get(machine)!].sort().map((to) => `${machine} -> ${to}`));
  assert.deepEqual(imports, [], `machines that import project modules:\n  ${imports.join("\n  ")}`);
});
