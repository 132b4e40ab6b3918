// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Coalition — the ledger of a tclearn trusted coalition.
/// @notice Records every model increment (by hash), the randomly drawn general that checks it, and the
///         validators' votes; commits a candidate once two thirds of the eligible validators approve.
///         Version 2: no admin. Founders are set at deployment; afterwards every change to the coalition
///         (admitting, re-roling or removing a member, the parameters and policy, the supervisor) is a
///         proposal executed once two thirds of the active members approve before its deadline. Votes may
///         be signed off chain (EIP-712) and carried to the contract in one `decide` transaction. A submission
///         charges the differential privacy (epsilon) its training spent to the member's budget, up to a cap.
///         A member that takes a committed model out for use records the export, signed, in `Exported`.
///         Model blobs live off-chain; their URI is emitted in `Submitted`, never stored, to keep a
///         submission cheap. Every state change emits an event, so history can be rebuilt from logs.
/// @dev Compiled for the `paris` EVM (no PUSH0) so that Ganache, Anvil and py-evm all run it.
contract Coalition {
    // ---- roles (bitmask) ------------------------------------------------------------------------
    uint8 public constant MEMBER = 1;
    uint8 public constant VALIDATOR = 2;
    uint8 public constant AUDITOR = 4;
    uint8 public constant SUPERVISOR = 8;
    uint8 private constant ALL_ROLES = 15;

    enum State { None, Submitted, Open, Committed, Rejected, Expired, Stale }

    uint8 public constant REJECT_INTEGRITY = 1;
    uint8 public constant REJECT_VOTES = 2;

    struct Member {
        uint8 roles;
        bool active;
        uint16 index; // bit position in the vote bitmaps, fixed for life
        uint48 validatorSince; // first model id this account may vote on
        uint40 joinedAt;
        uint32 memberSince; // first proposal id this account may ballot on
        uint16 validatorPos; // position in the active validators plus one; 0: not a validator
        uint64 epsilonSpent; // privacy spent by its candidates, epsilon in millionths; never decreases
        bytes32 encryptionKey; // X25519 public key
        string name;
    }

    /// @dev The hash plus ONE packed slot: proposer and general are member indices (uint16), so a vote
    ///      reads and rewrites a single slot. The URI and the metadata hash are in the Submitted event only.
    struct Model {
        bytes32 modelHash;
        uint48 parentId;
        uint16 proposer;
        uint16 general;
        State state;
        uint16 eligible;
        uint16 approvals;
        uint16 rejections;
        uint40 generalDeadline;
        uint40 votingDeadline;
    }

    /// @dev What getModel returns: the stored model with member indices resolved to addresses.
    struct ModelView {
        bytes32 modelHash;
        address proposer;
        uint256 parentId;
        State state;
        uint16 eligible;
        uint16 rejections;
        address general;
        uint64 generalDeadline;
        uint64 votingDeadline;
        uint16 approvals;
    }

    uint16 private constant NO_MEMBER = type(uint16).max;

    // ---- governance types -----------------------------------------------------------------------
    uint8 public constant ADMIT = 1; // action: abi.encode(address account, uint8 roles, bytes32 key, string name)
    uint8 public constant SET_ROLES = 2; // action: abi.encode(address account, uint8 roles)
    uint8 public constant REMOVE = 3; // action: abi.encode(address account)
    uint8 public constant SET_PARAMETERS = 4; // action: abi.encode(Parameters)
    uint8 public constant ROTATE_SUPERVISOR = 5; // action: abi.encode(address from, address to)

    enum ProposalState { None, Pending, Executed, Rejected }

    /// @dev The action itself is in the Proposed event only; storage keeps its hash, and `execute` is given
    ///      the action again. One slot besides the hash.
    struct Proposal {
        bytes32 actionHash;
        uint8 kind;
        ProposalState state;
        uint16 proposer;
        uint16 eligible;
        uint16 approvals;
        uint16 rejections;
        uint40 deadline;
    }

    struct ProposalView {
        bytes32 actionHash;
        uint8 kind;
        ProposalState state;
        address proposer;
        uint16 eligible;
        uint16 approvals;
        uint16 rejections;
        uint64 deadline;
    }

    /// @notice What the coalition sets by proposal besides its members (and at founding).
    struct Parameters {
        bytes32 policyHash; // sha256 of the acceptance policy record every validator applies
        bytes32 globalTestSetHash;
        uint64 generalTimeout;
        uint64 votingTimeout;
        uint64 proposalTimeout;
        uint16 minValidators; // a removal or re-roling may not leave fewer active validators
        uint64 epsilonCap; // each member's privacy budget, epsilon in millionths; 0: no cap
    }

    struct Founder {
        address account;
        uint8 roles;
        bytes32 encryptionKey;
        string name;
    }

    /// @notice The coalition a migrated one continues (all zero for a new coalition).
    struct Predecessor {
        uint256 chainId;
        address coalition;
        uint256 headId;
    }

    /// @notice A validator's vote, signed off chain over the EIP-712 `Vote` type.
    struct SignedVote {
        bool approve;
        int64 scoreGlobal;
        int64 scoreLocal;
        bytes32 evidenceHash;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    bytes32 public constant VOTE_TYPEHASH = keccak256(
        "Vote(uint256 candidate,bytes32 modelHash,bool approve,int64 scoreGlobal,int64 scoreLocal,bytes32 evidenceHash)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("tclearn Coalition");
    bytes32 private constant VERSION_HASH = keccak256("2");
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    // ---- storage --------------------------------------------------------------------------------
    // slot 0: the global test set; slot 1: the acceptance policy; slot 2: everything `submit` reads; slot 3:
    // the governance counters, the privacy cap (read by `submit` only when it charges) and the export count.
    bytes32 public globalTestSetHash;
    /// @notice sha256 of the acceptance policy record every validator applies (stored in the vault).
    bytes32 public policyHash;
    uint64 public generalTimeout;
    uint64 public votingTimeout;
    uint48 public head;
    uint48 private count;
    uint8 public variant;
    uint64 public proposalTimeout;
    uint32 private proposals;
    uint16 public minValidators;
    uint16 public activeMemberCount;
    /// @notice Each member's privacy budget over all its candidates, epsilon in millionths; 0: no cap.
    uint64 public epsilonCap;
    uint64 private exports;

    mapping(uint256 => Proposal) private proposalById;
    mapping(uint256 => mapping(uint256 => uint256)) private ballotBits; // proposal => word => bits

    mapping(uint256 => Model) private models;
    mapping(bytes32 => uint256) private idPlusOneByHash;
    mapping(address => Member) private members;
    address[] private memberList;
    address[] private validators; // active validators, unordered
    mapping(uint256 => mapping(uint256 => uint256)) private voteBits; // id => word => bits

    // ---- events ---------------------------------------------------------------------------------
    event MemberRegistered(address indexed account, uint8 roles, bytes32 encryptionKey, string name);
    event RolesChanged(address indexed account, uint8 roles, bool active);
    event EncryptionKeyChanged(address indexed account, bytes32 encryptionKey);
    event GlobalTestSetChanged(bytes32 hash);
    event PolicyChanged(bytes32 hash);
    event ParametersChanged(uint64 generalTimeout, uint64 votingTimeout, uint64 proposalTimeout, uint16 minValidators,
                            uint64 epsilonCap);
    event Founded(uint256 predecessorChainId, address predecessor, uint256 predecessorHeadId, bytes32 genesisHash);
    event Proposed(uint256 indexed proposal, address indexed proposer, uint8 kind, bytes action, uint16 eligible,
                   uint64 deadline);
    event Ballot(uint256 indexed proposal, address indexed member, bool approve);
    event ProposalExecuted(uint256 indexed proposal, uint8 kind);
    event ProposalRejected(uint256 indexed proposal);
    event SupervisorRotated(address indexed from, address indexed to);
    event Submitted(
        uint256 indexed id,
        uint256 indexed parentId,
        address indexed proposer,
        address general,
        bytes32 modelHash,
        string uri,
        bytes32 metadataHash,
        uint16 eligible,
        uint64 generalDeadline
    );
    event GeneralReassigned(uint256 indexed id, address indexed previousGeneral, address indexed general,
                            uint64 generalDeadline);
    event CandidateOpened(uint256 indexed id, address indexed general, bytes32 reportHash, uint64 votingDeadline);
    event Voted(uint256 indexed id, address indexed validator, bool approve, int64 scoreGlobal, int64 scoreLocal,
                bytes32 evidenceHash);
    event Committed(uint256 indexed id, uint256 indexed parentId, bytes32 modelHash, uint16 approvals,
                    uint16 rejections);
    event Rejected(uint256 indexed id, uint8 reason, bytes32 evidenceHash);
    event Expired(uint256 indexed id);
    event Staled(uint256 indexed id);
    /// @notice Candidate `id` charged `charge` to its proposer's privacy budget, which now stands at `spent`
    ///         (epsilon in millionths, the plain sum of its charges).
    event PrivacySpent(uint256 indexed id, address indexed member, uint64 charge, uint64 spent);
    /// @notice `member` took committed model `modelId` out of the coalition; the copy carries a fingerprint
    ///         whose commitment is `fingerprint`, and `keyBlob` is the vault hash of the fingerprint key's
    ///         sealed blob. Stored nowhere else: the counter numbers the exports.
    event Exported(uint256 indexed exportId, uint256 indexed modelId, address indexed member, bytes32 fingerprint,
                   bytes32 keyBlob);

    // ---- errors ---------------------------------------------------------------------------------
    error NotMember(address account);
    error NotValidator(address account);
    error NotGeneral(address caller, address general);
    error NotEligible(address validator, uint256 id);
    error AlreadyMember(address account);
    error InvalidRoles(uint8 roles);
    error InvalidVariant(uint8 variant);
    error InvalidTimeout();
    error ZeroAddress();
    error ZeroHash();
    error UnknownModel(uint256 id);
    error StaleParent(uint256 parentId, uint256 head);
    error DuplicateModel(bytes32 modelHash, uint256 existingId);
    error NoValidators();
    error NoOtherGeneral(uint256 id);
    error AlreadyVoted(address validator, uint256 id);
    error ProposerCannotVote(address proposer, uint256 id);
    error WrongState(uint256 id, State state);
    error DeadlinePassed(uint256 id, uint64 deadline);
    error DeadlineNotReached(uint256 id, uint64 deadline);
    error TooManyMembers();
    error NoFounders();
    error InvalidAction(uint8 kind);
    error UnknownProposal(uint256 proposal);
    error ProposalNotPending(uint256 proposal, ProposalState state);
    error ProposalExpired(uint256 proposal, uint64 deadline);
    error ProposalNotApproved(uint256 proposal, uint16 approvals, uint16 needed);
    error ActionMismatch(uint256 proposal);
    error NotBallotEligible(address member, uint256 proposal);
    error AlreadyBalloted(address member, uint256 proposal);
    error TooFewValidators(uint256 remaining, uint256 needed);
    error NotSupervisor(address account);
    error NoMembersLeft();
    error BadSignature(uint256 index);
    error UnsortedVotes(uint256 index);
    error NoDecision(uint256 id, uint16 approvals, uint16 rejections, uint16 eligible);
    error OverBudget(address member, uint64 spent, uint64 charge, uint64 cap);
    error NotCommitted(uint256 id, State state);

    /// @param founders the first members; no single key can change the coalition afterwards.
    /// @param predecessor the v1 (or earlier) coalition whose head this one's genesis continues, or zeros.
    constructor(
        uint8 variant_,
        bytes32 genesisHash,
        string memory genesisUri,
        Parameters memory parameters,
        Founder[] memory founders,
        Predecessor memory predecessor
    ) {
        if (variant_ < 1 || variant_ > 3) revert InvalidVariant(variant_);
        if (genesisHash == bytes32(0)) revert ZeroHash();
        if (founders.length == 0) revert NoFounders();
        variant = variant_;
        _setParameters(parameters);
        Model storage g = models[0];
        g.modelHash = genesisHash;
        g.proposer = NO_MEMBER;
        g.general = NO_MEMBER;
        g.state = State.Committed;
        count = 1;
        idPlusOneByHash[genesisHash] = 1;
        emit Founded(predecessor.chainId, predecessor.coalition, predecessor.headId, genesisHash);
        emit Submitted(0, 0, msg.sender, address(0), genesisHash, genesisUri, bytes32(0), 0, 0);
        emit Committed(0, 0, genesisHash, 0, 0);
        for (uint256 i = 0; i < founders.length; ++i) {
            Founder memory f = founders[i];
            _admit(f.account, f.roles, f.encryptionKey, f.name);
        }
        _checkValidators();
    }

    // ---- governance: proposals executed once two thirds of the active members approve --------------

    /// @notice An active member proposes an action (its approval counts); returns the proposal id.
    function propose(uint8 kind, bytes calldata action) external returns (uint256 pid) {
        Member storage m = members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        _checkAction(kind, action);
        pid = proposals;
        proposals = uint32(pid + 1);
        uint40 deadline = uint40(block.timestamp + proposalTimeout);
        uint16 eligible = activeMemberCount;
        Proposal storage p = proposalById[pid];
        p.actionHash = keccak256(action);
        p.kind = kind;
        p.state = ProposalState.Pending;
        p.proposer = m.index;
        p.eligible = eligible;
        p.approvals = 1;
        p.deadline = deadline;
        ballotBits[pid][m.index >> 8] = uint256(1) << (m.index & 255);
        emit Proposed(pid, msg.sender, kind, action, eligible, deadline);
        emit Ballot(pid, msg.sender, true);
    }

    /// @notice An active member that was one when the proposal was made approves or rejects it, once.
    function ballot(uint256 pid, bool approve) external {
        Proposal storage p = _pending(pid);
        Member storage m = members[msg.sender];
        if (!m.active || m.memberSince > pid) revert NotBallotEligible(msg.sender, pid);
        uint256 word = m.index >> 8;
        uint256 bit = uint256(1) << (m.index & 255);
        uint256 bits = ballotBits[pid][word];
        if (bits & bit != 0) revert AlreadyBalloted(msg.sender, pid);
        ballotBits[pid][word] = bits | bit;
        emit Ballot(pid, msg.sender, approve);
        if (approve) {
            p.approvals += 1;
        } else {
            uint16 rejections = p.rejections + 1;
            p.rejections = rejections;
            if (uint256(rejections) * 3 > p.eligible) {
                p.state = ProposalState.Rejected;
                emit ProposalRejected(pid);
            }
        }
    }

    /// @notice Anyone executes an approved proposal before its deadline, giving its action again.
    function execute(uint256 pid, bytes calldata action) external {
        Proposal storage p = _pending(pid);
        uint16 approvals = p.approvals;
        if (uint256(approvals) * 3 < uint256(p.eligible) * 2) {
            revert ProposalNotApproved(pid, approvals, uint16((uint256(p.eligible) * 2 + 2) / 3));
        }
        if (keccak256(action) != p.actionHash) revert ActionMismatch(pid);
        uint8 kind = p.kind;
        p.state = ProposalState.Executed;
        if (kind == ADMIT) {
            (address account, uint8 roles, bytes32 key, string memory name) =
                abi.decode(action, (address, uint8, bytes32, string));
            _admit(account, roles, key, name);
        } else if (kind == SET_ROLES) {
            (address account, uint8 roles) = abi.decode(action, (address, uint8));
            Member storage m = members[account];
            if (!m.active) revert NotMember(account);
            _applyRoles(account, m, roles);
            emit RolesChanged(account, roles, true);
        } else if (kind == REMOVE) {
            address account = abi.decode(action, (address));
            Member storage m = members[account];
            if (!m.active) revert NotMember(account);
            _applyRoles(account, m, 0);
            m.active = false;
            activeMemberCount -= 1;
            emit RolesChanged(account, 0, false);
        } else if (kind == SET_PARAMETERS) {
            _setParameters(abi.decode(action, (Parameters)));
        } else {
            (address from, address to) = abi.decode(action, (address, address));
            _rotateSupervisor(from, to);
        }
        _checkValidators();
        emit ProposalExecuted(pid, kind);
    }

    /// @notice A member rotates its own X25519 encryption key.
    function setEncryptionKey(bytes32 encryptionKey) external {
        Member storage m = members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        m.encryptionKey = encryptionKey;
        emit EncryptionKeyChanged(msg.sender, encryptionKey);
    }

    // ---- the round --------------------------------------------------------------------------------

    /// @notice A member proposes a candidate on the head; `epsilonCharge` is the privacy (epsilon in millionths)
    ///         its training spent, charged to the member's budget now, whatever becomes of the candidate.
    function submit(uint256 parentId, bytes32 modelHash, string calldata uri, bytes32 metadataHash,
                    uint64 epsilonCharge)
        external
        returns (uint256 id)
    {
        Member storage m = members[msg.sender];
        if (!m.active || m.roles & MEMBER == 0) revert NotMember(msg.sender);
        if (parentId != head) revert StaleParent(parentId, head);
        if (modelHash == bytes32(0) || metadataHash == bytes32(0)) revert ZeroHash();
        {
            uint256 existing = idPlusOneByHash[modelHash];
            if (existing != 0) revert DuplicateModel(modelHash, existing - 1);
        }
        uint256 eligible = validators.length;
        if (m.validatorPos != 0) eligible -= 1;
        if (eligible == 0) revert NoValidators();

        id = count;
        address general = _drawFirst(id, msg.sender, eligible);
        uint40 deadline = uint40(block.timestamp + generalTimeout);
        count = uint48(id + 1);
        Model storage c = models[id];
        c.modelHash = modelHash;
        c.parentId = uint48(parentId);
        c.proposer = m.index;
        c.general = members[general].index;
        c.state = State.Submitted;
        c.eligible = uint16(eligible);
        c.generalDeadline = deadline;
        idPlusOneByHash[modelHash] = id + 1;
        emit Submitted(id, parentId, msg.sender, general, modelHash, uri, metadataHash, uint16(eligible), deadline);
        if (epsilonCharge != 0) _spend(m, id, epsilonCharge);
    }

    /// @notice The general reports the integrity check: ok opens voting, not ok rejects the candidate.
    function openCandidate(uint256 id, bool integrityOk, bytes32 reportHash) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        if (c.state != State.Submitted) revert WrongState(id, c.state);
        Member storage m = members[msg.sender];
        if (!m.active || m.index != c.general) revert NotGeneral(msg.sender, memberList[c.general]);
        if (block.timestamp > c.generalDeadline) revert DeadlinePassed(id, c.generalDeadline);
        if (reportHash == bytes32(0)) revert ZeroHash();
        if (!integrityOk) {
            c.state = State.Rejected;
            emit Rejected(id, REJECT_INTEGRITY, reportHash);
            return;
        }
        uint40 deadline = uint40(block.timestamp + votingTimeout);
        c.state = State.Open;
        c.votingDeadline = deadline;
        emit CandidateOpened(id, msg.sender, reportHash, deadline);
    }

    /// @notice After a silent general's deadline, anyone may draw a new one (never the same account).
    function reassignGeneral(uint256 id) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        if (c.state != State.Submitted) revert WrongState(id, c.state);
        if (block.timestamp <= c.generalDeadline) revert DeadlineNotReached(id, c.generalDeadline);
        address previous = memberList[c.general];
        address general = _drawNext(id, memberList[c.proposer], previous);
        if (general == address(0)) revert NoOtherGeneral(id);
        uint40 deadline = uint40(block.timestamp + generalTimeout);
        c.general = members[general].index;
        c.generalDeadline = deadline;
        emit GeneralReassigned(id, previous, general, deadline);
    }

    /// @notice One validator's vote in its own transaction (the fallback when signatures are not collected).
    function vote(uint256 id, bool approve, int64 scoreGlobal, int64 scoreLocal, bytes32 evidenceHash) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        _checkOpen(id, c);
        _record(id, c.proposer, msg.sender, approve, scoreGlobal, scoreLocal, evidenceHash);
        uint16 approvals = c.approvals;
        uint16 rejections = c.rejections;
        if (approve) approvals += 1;
        else rejections += 1;
        c.approvals = approvals;
        c.rejections = rejections;
        _conclude(id, c, approvals, rejections);
    }

    /// @notice Anyone carries the validators' signed votes to the chain in one transaction: every signature,
    ///         signer's eligibility and uniqueness is checked, every vote emitted, and the candidate is
    ///         committed or rejected; a batch that decides nothing reverts. Signers come in ascending address
    ///         order (so a duplicate is found without storage); a batch decides, so no vote can follow it and
    ///         it records no vote bits: `hasVoted` reports votes cast with `vote`, the `Voted` events all.
    function decide(uint256 id, SignedVote[] calldata votes) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        _checkOpen(id, c);
        bytes32 domain = domainSeparator();
        uint16 approvals = c.approvals;
        uint16 rejections = c.rejections;
        address last = address(0);
        for (uint256 i = 0; i < votes.length; ++i) {
            SignedVote calldata v = votes[i];
            last = _take(id, c, domain, v, i, last);
            emit Voted(id, last, v.approve, v.scoreGlobal, v.scoreLocal, v.evidenceHash);
            if (v.approve) approvals += 1;
            else rejections += 1;
        }
        c.approvals = approvals;
        c.rejections = rejections;
        if (!_conclude(id, c, approvals, rejections)) revert NoDecision(id, approvals, rejections, c.eligible);
    }

    /// @notice Anyone may expire a candidate whose current deadline (general's or voting) has passed.
    function expire(uint256 id) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        uint64 deadline;
        if (c.state == State.Submitted) deadline = c.generalDeadline;
        else if (c.state == State.Open) deadline = c.votingDeadline;
        else revert WrongState(id, c.state);
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        c.state = State.Expired;
        emit Expired(id);
    }

    /// @notice Marks a pending candidate whose parent is no longer head as Stale (anyone may call).
    function markStale(uint256 id) external {
        Model storage c = _live(id);
        if (c.state != State.Stale) revert WrongState(id, c.state);
    }

    // ---- exports ----------------------------------------------------------------------------------

    /// @notice A member records that it took committed model `modelId` out for use, with a copy fingerprinted
    ///         (`fingerprint`: the commitment to the mark it carries; `keyBlob`: the vault hash of its sealed key).
    function recordExport(uint256 modelId, bytes32 fingerprint, bytes32 keyBlob) external returns (uint256 exportId) {
        Member storage m = members[msg.sender];
        if (!m.active || m.roles & MEMBER == 0) revert NotMember(msg.sender);
        if (modelId >= count) revert UnknownModel(modelId);
        State state = models[modelId].state;
        if (state != State.Committed) revert NotCommitted(modelId, state);
        if (fingerprint == bytes32(0) || keyBlob == bytes32(0)) revert ZeroHash();
        exportId = exports;
        exports = uint64(exportId + 1);
        emit Exported(exportId, modelId, msg.sender, fingerprint, keyBlob);
    }

    // ---- views ------------------------------------------------------------------------------------

    function modelCount() external view returns (uint256) {
        return count;
    }

    function getModel(uint256 id) external view returns (ModelView memory v) {
        if (id >= count) revert UnknownModel(id);
        Model storage c = models[id];
        v.modelHash = c.modelHash;
        v.proposer = _addressOf(c.proposer);
        v.parentId = c.parentId;
        v.state = c.state;
        v.eligible = c.eligible;
        v.rejections = c.rejections;
        v.general = _addressOf(c.general);
        v.generalDeadline = c.generalDeadline;
        v.votingDeadline = c.votingDeadline;
        v.approvals = c.approvals;
    }

    function modelIdOf(bytes32 modelHash) external view returns (uint256) {
        uint256 idPlusOne = idPlusOneByHash[modelHash];
        if (idPlusOne == 0) revert UnknownModel(type(uint256).max);
        return idPlusOne - 1;
    }

    function getMember(address account) external view returns (Member memory) {
        return members[account];
    }

    function memberCount() external view returns (uint256) {
        return memberList.length;
    }

    function memberAt(uint256 index) external view returns (address) {
        return memberList[index];
    }

    function validatorCount() external view returns (uint256) {
        return validators.length;
    }

    function exportCount() external view returns (uint256) {
        return exports;
    }

    /// @notice The privacy `account` has spent and the cap every member's spending is held to (epsilon in
    ///         millionths; a cap of 0: none).
    function privacyBudget(address account) external view returns (uint64 spent, uint64 cap) {
        return (members[account].epsilonSpent, epsilonCap);
    }

    /// @notice The EIP-712 domain of signed votes: name "tclearn Coalition", version "2", this chain, this contract.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function proposalCount() external view returns (uint256) {
        return proposals;
    }

    function getProposal(uint256 pid) external view returns (ProposalView memory v) {
        if (pid >= proposals) revert UnknownProposal(pid);
        Proposal storage p = proposalById[pid];
        v.actionHash = p.actionHash;
        v.kind = p.kind;
        v.state = p.state;
        v.proposer = memberList[p.proposer];
        v.eligible = p.eligible;
        v.approvals = p.approvals;
        v.rejections = p.rejections;
        v.deadline = p.deadline;
    }

    function hasBallot(uint256 pid, address member) external view returns (bool) {
        uint16 index = members[member].index;
        if (members[member].joinedAt == 0) return false;
        return ballotBits[pid][index >> 8] & (uint256(1) << (index & 255)) != 0;
    }

    /// @notice Whether `validator` voted on `id` with `vote` (a signed vote carried by `decide` is in `Voted`).
    function hasVoted(uint256 id, address validator) external view returns (bool) {
        uint16 index = members[validator].index;
        if (members[validator].joinedAt == 0) return false;
        return voteBits[id][index >> 8] & (uint256(1) << (index & 255)) != 0;
    }

    // ---- internals --------------------------------------------------------------------------------

    /// @dev Loads a candidate; if it is pending on a parent that is no longer head, marks it Stale.
    function _live(uint256 id) private returns (Model storage c) {
        if (id >= count) revert UnknownModel(id);
        c = models[id];
        if ((c.state == State.Submitted || c.state == State.Open) && c.parentId != head) {
            c.state = State.Stale;
            emit Staled(id);
        }
    }

    function _checkOpen(uint256 id, Model storage c) private view {
        if (c.state != State.Open) revert WrongState(id, c.state);
        if (block.timestamp > c.votingDeadline) revert DeadlinePassed(id, c.votingDeadline);
    }

    /// @dev The signer of the `i`th vote of a batch, checked: a valid signature, after `previous` in address
    ///      order, an eligible validator that has not voted on `id` with `vote`.
    function _take(uint256 id, Model storage c, bytes32 domain, SignedVote calldata v, uint256 i, address previous)
        private
        view
        returns (address signer)
    {
        signer = _signer(domain, id, c.modelHash, v, i);
        if (signer <= previous) {
            if (signer == previous) revert AlreadyVoted(signer, id);
            revert UnsortedVotes(i);
        }
        uint16 index = _eligibleVoter(id, c.proposer, signer).index;
        if (voteBits[id][index >> 8] & (uint256(1) << (index & 255)) != 0) revert AlreadyVoted(signer, id);
    }

    /// @dev The account that signed `v` for candidate `id` (its EIP-712 digest under `domain`).
    function _signer(bytes32 domain, uint256 id, bytes32 modelHash, SignedVote calldata v, uint256 i)
        private
        pure
        returns (address signer)
    {
        bytes32 digest = keccak256(abi.encodePacked(
            "\x19\x01",
            domain,
            keccak256(abi.encode(VOTE_TYPEHASH, id, modelHash, v.approve, v.scoreGlobal, v.scoreLocal, v.evidenceHash))
        ));
        if (uint256(v.s) > HALF_ORDER) revert BadSignature(i);
        signer = ecrecover(digest, v.v, v.r, v.s);
        if (signer == address(0)) revert BadSignature(i);
    }

    /// @dev `validator` as a member that may vote on `id` (not whether it has).
    function _eligibleVoter(uint256 id, uint16 proposer, address validator) private view returns (Member storage m) {
        m = members[validator];
        if (!m.active || m.roles & VALIDATOR == 0) revert NotValidator(validator);
        if (m.index == proposer) revert ProposerCannotVote(validator, id);
        if (m.validatorSince > id) revert NotEligible(validator, id);
    }

    /// @dev Checks that `validator` may vote on `id`, once, and records and emits its vote.
    function _record(uint256 id, uint16 proposer, address validator, bool approve, int64 scoreGlobal,
                     int64 scoreLocal, bytes32 evidenceHash) private {
        uint16 index = _eligibleVoter(id, proposer, validator).index;
        uint256 word = index >> 8;
        uint256 bit = uint256(1) << (index & 255);
        uint256 bits = voteBits[id][word];
        if (bits & bit != 0) revert AlreadyVoted(validator, id);
        voteBits[id][word] = bits | bit;
        emit Voted(id, validator, approve, scoreGlobal, scoreLocal, evidenceHash);
    }

    /// @dev Commits or rejects once the tally decides; false while it does not.
    function _conclude(uint256 id, Model storage c, uint16 approvals, uint16 rejections) private returns (bool) {
        uint256 eligible = c.eligible;
        if (uint256(approvals) * 3 >= eligible * 2) {
            c.state = State.Committed;
            head = uint48(id);
            emit Committed(id, c.parentId, c.modelHash, approvals, rejections);
            return true;
        }
        if (uint256(rejections) * 3 > eligible) {
            c.state = State.Rejected;
            emit Rejected(id, REJECT_VOTES, bytes32(0));
            return true;
        }
        return false;
    }

    /// @dev Charges `charge` to the proposer `m` of candidate `id`: the plain sum, never past the cap (with no
    ///      cap, never past what the counter holds).
    function _spend(Member storage m, uint256 id, uint64 charge) private {
        uint64 spent = m.epsilonSpent;
        uint64 cap = epsilonCap;
        uint256 total = uint256(spent) + charge;
        if (total > (cap == 0 ? type(uint64).max : cap)) revert OverBudget(msg.sender, spent, charge, cap);
        m.epsilonSpent = uint64(total);
        emit PrivacySpent(id, msg.sender, charge, uint64(total));
    }

    function _pending(uint256 pid) private view returns (Proposal storage p) {
        if (pid >= proposals) revert UnknownProposal(pid);
        p = proposalById[pid];
        if (p.state != ProposalState.Pending) revert ProposalNotPending(pid, p.state);
        if (block.timestamp > p.deadline) revert ProposalExpired(pid, p.deadline);
    }

    function _checkRoles(uint8 roles) private pure {
        if (roles == 0 || roles > ALL_ROLES) revert InvalidRoles(roles);
    }

    /// @dev What can be checked of an action when it is proposed (execute checks the coalition as it is then).
    function _checkAction(uint8 kind, bytes calldata action) private view {
        if (kind == ADMIT) {
            (address account, uint8 roles,,) = abi.decode(action, (address, uint8, bytes32, string));
            if (account == address(0)) revert ZeroAddress();
            _checkRoles(roles);
            if (members[account].active) revert AlreadyMember(account);
        } else if (kind == SET_ROLES) {
            (address account, uint8 roles) = abi.decode(action, (address, uint8));
            _checkRoles(roles);
            if (!members[account].active) revert NotMember(account);
        } else if (kind == REMOVE) {
            address account = abi.decode(action, (address));
            if (!members[account].active) revert NotMember(account);
        } else if (kind == SET_PARAMETERS) {
            _checkParameters(abi.decode(action, (Parameters)));
        } else if (kind == ROTATE_SUPERVISOR) {
            (address from, address to) = abi.decode(action, (address, address));
            if (from == to) revert InvalidAction(kind); // to its own holder: nothing to hand on
            if (from != address(0) && !_isSupervisor(members[from])) revert NotSupervisor(from);
            if (!members[to].active) revert NotMember(to);
        } else {
            revert InvalidAction(kind);
        }
    }

    function _checkParameters(Parameters memory p) private pure {
        if (p.policyHash == bytes32(0)) revert ZeroHash();
        if (p.generalTimeout == 0 || p.votingTimeout == 0 || p.proposalTimeout == 0) revert InvalidTimeout();
    }

    function _setParameters(Parameters memory p) private {
        _checkParameters(p);
        globalTestSetHash = p.globalTestSetHash;
        policyHash = p.policyHash;
        generalTimeout = p.generalTimeout;
        votingTimeout = p.votingTimeout;
        proposalTimeout = p.proposalTimeout;
        minValidators = p.minValidators;
        epsilonCap = p.epsilonCap;
        emit GlobalTestSetChanged(p.globalTestSetHash);
        emit PolicyChanged(p.policyHash);
        emit ParametersChanged(p.generalTimeout, p.votingTimeout, p.proposalTimeout, p.minValidators, p.epsilonCap);
    }

    /// @dev Registers `account`, or re-activates a removed one with new roles, key and name.
    function _admit(address account, uint8 roles, bytes32 encryptionKey, string memory name) private {
        if (account == address(0)) revert ZeroAddress();
        _checkRoles(roles);
        Member storage m = members[account];
        if (m.active) revert AlreadyMember(account);
        if (m.joinedAt == 0) {
            if (memberList.length >= NO_MEMBER) revert TooManyMembers();
            m.index = uint16(memberList.length);
            memberList.push(account);
        }
        m.joinedAt = uint40(block.timestamp);
        m.memberSince = proposals;
        m.encryptionKey = encryptionKey;
        m.name = name;
        m.active = true;
        m.roles = 0;
        activeMemberCount += 1;
        _applyRoles(account, m, roles);
        emit MemberRegistered(account, roles, encryptionKey, name);
    }

    function _rotateSupervisor(address from, address to) private {
        if (from == to) revert InvalidAction(ROTATE_SUPERVISOR);
        if (from != address(0)) {
            Member storage f = members[from];
            if (!_isSupervisor(f)) revert NotSupervisor(from);
            uint8 left = f.roles & ~SUPERVISOR;
            if (left == 0) {
                _applyRoles(from, f, 0);
                f.active = false;
                activeMemberCount -= 1;
                emit RolesChanged(from, 0, false);
            } else {
                _applyRoles(from, f, left);
                emit RolesChanged(from, left, true);
            }
        }
        Member storage t = members[to];
        if (!t.active) revert NotMember(to);
        uint8 roles = t.roles | SUPERVISOR;
        _applyRoles(to, t, roles);
        emit RolesChanged(to, roles, true);
        emit SupervisorRotated(from, to);
    }

    function _isSupervisor(Member storage m) private view returns (bool) {
        return m.active && m.roles & SUPERVISOR != 0;
    }

    /// @dev What no change may break: enough validators for a round, and someone left to propose.
    function _checkValidators() private view {
        if (validators.length < minValidators) revert TooFewValidators(validators.length, minValidators);
        if (activeMemberCount == 0) revert NoMembersLeft();
    }

    function _applyRoles(address account, Member storage m, uint8 roles) private {
        bool was = m.roles & VALIDATOR != 0;
        bool becomes = roles & VALIDATOR != 0;
        if (becomes && !was) {
            validators.push(account);
            m.validatorPos = uint16(validators.length);
            m.validatorSince = count;
        } else if (was && !becomes) {
            uint256 pos = m.validatorPos - 1;
            address last = validators[validators.length - 1];
            validators[pos] = last;
            members[last].validatorPos = uint16(pos + 1);
            validators.pop();
            m.validatorPos = 0;
        }
        m.roles = roles;
    }

    function _addressOf(uint16 index) private view returns (address) {
        return index == NO_MEMBER ? address(0) : memberList[index];
    }

    function _seed(uint256 id, address previous) private view returns (uint256) {
        return uint256(keccak256(abi.encodePacked(block.prevrandao, blockhash(block.number - 1), id, previous)));
    }

    /// @dev The first general: `seed mod eligible` over the active validators with the proposer's slot
    ///      skipped, so every eligible validator is equally likely. Every active validator is eligible
    ///      for a new id (validatorSince <= count).
    function _drawFirst(uint256 id, address proposer, uint256 eligible) private view returns (address) {
        uint256 r = _seed(id, address(0)) % eligible;
        uint256 proposerPos = members[proposer].validatorPos;
        if (proposerPos != 0 && r >= proposerPos - 1) r += 1;
        return validators[r];
    }

    /// @dev A new general after a silent one: from a random position, the next active validator that was
    ///      eligible for `id` and is neither the proposer nor the previous general; address(0) if none.
    ///      The walk is bounded by the validator count and runs only in reassignGeneral, never in vote.
    function _drawNext(uint256 id, address proposer, address previous) private view returns (address) {
        uint256 n = validators.length;
        if (n == 0) return address(0);
        uint256 start = _seed(id, previous) % n;
        for (uint256 k = 0; k < n; ++k) {
            address candidate = validators[(start + k) % n];
            if (candidate != proposer && candidate != previous && members[candidate].validatorSince <= id) {
                return candidate;
            }
        }
        return address(0);
    }
}
