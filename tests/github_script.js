// The rehearsal's actions/github-script: runs a workflow's script with Node, as the action does,
// against a repository whose issues live in a JSON file, so a second run finds the issue the
// first one opened.
// usage: node github_script.js <script file> <issues.json> <owner/repo> <run id>
"use strict";
const fs = require("fs");

const [scriptFile, issuesFile, repository, runId] = process.argv.slice(2);
const [owner, repo] = repository.split("/");
const load = () => (fs.existsSync(issuesFile) ? JSON.parse(fs.readFileSync(issuesFile, "utf8")) : []);
const save = (issues) => fs.writeFileSync(issuesFile, JSON.stringify(issues, null, 2) + "\n");
const named = (labels) => labels.map((label) => (typeof label === "string" ? label : label.name));

const github = {
  rest: {
    issues: {
      async listForRepo({ state, labels }) {
        const wanted = (labels || "").split(",").filter(Boolean);
        const data = load().filter(
          (issue) =>
            (state === "all" || issue.state === (state || "open")) &&
            wanted.every((label) => issue.labels.includes(label)),
        );
        return { data };
      },
      async create({ title, body, labels }) {
        const issues = load();
        const issue = { number: issues.length + 1, title, body, labels: named(labels || []), state: "open" };
        save([...issues, issue]);
        return { data: issue };
      },
      async update({ issue_number, ...changes }) {
        const issues = load();
        const issue = issues.find((found) => found.number === issue_number);
        if (!issue) throw new Error(`no issue #${issue_number}`);
        Object.assign(issue, changes);
        save(issues);
        return { data: issue };
      },
    },
  },
};
const context = { repo: { owner, repo }, serverUrl: "https://github.com", runId: Number(runId) };
const core = { info: (text) => console.log(text), setFailed: (text) => { throw new Error(text); } };

const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
const script = new AsyncFunction("require", "github", "context", "core", fs.readFileSync(scriptFile, "utf8"));
script(require, github, context, core).catch((error) => {
  console.error(error.message);
  process.exit(1);
});
