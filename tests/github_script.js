// The rehearsal's actions/github-script: runs a workflow's script with Node, as the action does,
// against a repository kept in a JSON file (issues, pull requests, git objects and refs), so a
// second run finds what the first one made. Only the REST calls the workflows make are here.
// usage: node github_script.js <script file> <github.json> <owner/repo> <run id> <sha> <ref>
"use strict";
const crypto = require("crypto");
const fs = require("fs");

const [scriptFile, stateFile, repository, runId, sha, ref] = process.argv.slice(2);
const [owner, repo] = repository.split("/");
const empty = { issues: [], pulls: [], refs: {}, blobs: {}, trees: {}, commits: {} };
const load = () => ({ ...empty, ...(fs.existsSync(stateFile) ? JSON.parse(fs.readFileSync(stateFile, "utf8")) : {}) });
const save = (state) => fs.writeFileSync(stateFile, JSON.stringify(state, null, 2) + "\n");
const named = (labels) => labels.map((label) => (typeof label === "string" ? label : label.name));
const hash = (value) => crypto.createHash("sha1").update(JSON.stringify(value)).digest("hex");
const failure = (status, message) => Object.assign(new Error(message), { status });
// Changes `state` with `change` and saves it; returns what `change` returns.
const edit = (change) => {
  const state = load();
  const result = change(state);
  save(state);
  return { data: result };
};

const github = {
  rest: {
    issues: {
      async listForRepo({ state, labels }) {
        const wanted = (labels || "").split(",").filter(Boolean);
        const data = load().issues.filter(
          (issue) =>
            (state === "all" || issue.state === (state || "open")) &&
            wanted.every((label) => issue.labels.includes(label)),
        );
        return { data };
      },
      async create({ title, body, labels }) {
        return edit((state) => {
          const issue = { number: state.issues.length + state.pulls.length + 1, title, body, labels: named(labels || []), state: "open" };
          state.issues.push(issue);
          return issue;
        });
      },
      async update({ issue_number, ...changes }) {
        return edit((state) => {
          const issue = state.issues.find((found) => found.number === issue_number);
          if (!issue) throw failure(404, `no issue #${issue_number}`);
          delete changes.owner;
          delete changes.repo;
          return Object.assign(issue, changes);
        });
      },
    },
    git: {
      async getCommit({ commit_sha }) {
        const known = load().commits[commit_sha];
        // The checked-out commit is not in the file: its tree stands for itself.
        return { data: known || { sha: commit_sha, tree: { sha: `tree-of-${commit_sha}` }, parents: [] } };
      },
      async createBlob({ content, encoding }) {
        if (encoding !== "base64") throw failure(422, "the workflows send base64");
        return edit((state) => {
          const blob = { sha: hash(content), content: Buffer.from(content, "base64").toString("utf8") };
          state.blobs[blob.sha] = blob;
          return blob;
        });
      },
      async createTree({ base_tree, tree }) {
        return edit((state) => {
          for (const entry of tree) {
            if (!state.blobs[entry.sha]) throw failure(422, `no blob ${entry.sha}`);
          }
          const made = { sha: hash({ base_tree, tree }), base_tree, tree };
          state.trees[made.sha] = made;
          return made;
        });
      },
      async createCommit({ message, tree, parents }) {
        return edit((state) => {
          if (!state.trees[tree]) throw failure(422, `no tree ${tree}`);
          const commit = { sha: hash({ message, tree, parents, at: Object.keys(state.commits).length }), message, tree: { sha: tree }, parents };
          state.commits[commit.sha] = commit;
          return commit;
        });
      },
      async updateRef({ ref: name, sha: target, force }) {
        return edit((state) => {
          if (!(`refs/${name}` in state.refs)) throw failure(422, "Reference does not exist");
          if (!force) throw failure(422, "Update is not a fast forward");
          state.refs[`refs/${name}`] = target;
          return { ref: `refs/${name}`, object: { sha: target } };
        });
      },
      async createRef({ ref: name, sha: target }) {
        return edit((state) => {
          if (name in state.refs) throw failure(422, "Reference already exists");
          state.refs[name] = target;
          return { ref: name, object: { sha: target } };
        });
      },
    },
    pulls: {
      async list({ state, head }) {
        const data = load().pulls.filter(
          (pull) => (state === "all" || pull.state === (state || "open")) && (!head || `${owner}:${pull.head}` === head),
        );
        return { data };
      },
      async create({ head, base, title, body }) {
        return edit((state) => {
          const pull = { number: state.issues.length + state.pulls.length + 1, head, base, title, body, state: "open" };
          state.pulls.push(pull);
          return pull;
        });
      },
      async update({ pull_number, body }) {
        return edit((state) => {
          const pull = state.pulls.find((found) => found.number === pull_number);
          if (!pull) throw failure(404, `no pull request #${pull_number}`);
          pull.body = body;
          return pull;
        });
      },
    },
  },
};
const context = { repo: { owner, repo }, serverUrl: "https://github.com", runId: Number(runId), sha, ref };
const outputs = process.env.GITHUB_OUTPUT;
const core = {
  info: (text) => console.log(text),
  setFailed: (text) => {
    throw new Error(text);
  },
  setOutput: (name, value) => fs.appendFileSync(outputs, `${name}=${value}\n`),
};

const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
const script = new AsyncFunction("require", "github", "context", "core", fs.readFileSync(scriptFile, "utf8"));
script(require, github, context, core).catch((error) => {
  console.error(error.message);
  process.exit(1);
});
