// Undo/redo by snapshots: after every user action (pointer up, key up, widget edit, paste,
// load) the graph is serialised and compared with the last state; a difference becomes an undo
// step. The view (pan/zoom) is not part of a state. Also says whether the graph differs from
// the last saved version (the "modified" marker).

function comparable(state) {
  if (!state || typeof state !== 'object') return JSON.stringify(state);
  const { extra, ...rest } = state;
  const e = extra && typeof extra === 'object' ? { ...extra } : extra;
  if (e && typeof e === 'object') delete e.ds;
  return JSON.stringify({ ...rest, extra: e });
}

export class ChangeTracker {
  /** getState() → serialisable state; setState(state) restores one. */
  constructor(getState, setState, { max = 100 } = {}) {
    this.getState = getState;
    this.setState = setState;
    this.max = max;
    this.undoStack = [];
    this.redoStack = [];
    this.current = null;
    this.saved = null;
    this.restoring = false;
  }

  /** Starts over from the present state (after opening a workflow); `saved` marks it clean. */
  reset(saved = true) {
    this.undoStack = [];
    this.redoStack = [];
    this.current = comparable(this.getState());
    if (saved) this.saved = this.current;
  }

  markSaved() {
    this.saved = comparable(this.getState());
  }

  get modified() {
    return this.current !== this.saved;
  }

  /** Records a step when the graph changed since the last check. True when it did. */
  check() {
    if (this.restoring) return false;
    const now = comparable(this.getState());
    if (now === this.current) return false;
    if (this.current !== null) {
      this.undoStack.push(this.current);
      if (this.undoStack.length > this.max) this.undoStack.shift();
    }
    this.redoStack = [];
    this.current = now;
    return true;
  }

  #go(from, to) {
    this.check();
    if (!from.length) return false;
    to.push(this.current);
    this.current = from.pop();
    this.restoring = true;
    try {
      this.setState(JSON.parse(this.current));
    } finally {
      this.restoring = false;
    }
    return true;
  }

  undo() {
    return this.#go(this.undoStack, this.redoStack);
  }

  redo() {
    return this.#go(this.redoStack, this.undoStack);
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }
}
