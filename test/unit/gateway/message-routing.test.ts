/** The bridge's message-type routing: the catalogue for known types, the naming convention for the rest. */
import { expect } from 'chai';
import {
  awaitsReply,
  isReply,
  isRequest,
  replyTypeOf,
} from '../../../gateway/kernel/message-routing.js';

describe('kernel/message-routing', () => {
  it('takes known requests and replies from the catalogue', () => {
    expect(replyTypeOf('execute_request')).to.equal('execute_reply');
    expect(replyTypeOf('list_subshell_request')).to.equal('list_subshell_reply');
    expect(isRequest('interrupt_request')).to.equal(true);
    expect(isReply('kernel_info_reply')).to.equal(true);
  });

  it('does not take catalogued non-requests for requests, nor non-replies for replies', () => {
    expect(isRequest('input_request'), 'the kernel asks it; nobody replies to a client').to.equal(
      false,
    );
    expect(isRequest('comm_msg')).to.equal(false);
    expect(isReply('input_reply'), 'a client answer, which settles nothing').to.equal(false);
    expect(isReply('status')).to.equal(false);
    expect(isRequest('constructor')).to.equal(false);
    expect(isReply('__proto__')).to.equal(false);
  });

  it('handles unknown types by the naming convention, as the bridge always did', () => {
    expect(isRequest('usage_request')).to.equal(true);
    expect(replyTypeOf('usage_request')).to.equal('usage_reply');
    expect(isReply('usage_reply')).to.equal(true);
    expect(replyTypeOf('odd')).to.equal('odd_reply');
  });

  it('never waits for a reply to what a client sends on stdin', () => {
    expect(awaitsReply('execute_request', 'shell')).to.equal(true);
    expect(awaitsReply('usage_request', 'stdin')).to.equal(false);
    expect(awaitsReply('input_reply', 'stdin')).to.equal(false);
  });
});
